# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## make run: install, load demo data on the embedded SQLite database, serve on http://127.0.0.1:8000/
run: $(STAMP)
	$(BIN)/piaotong demo
	$(BIN)/piaotong serve

## make test: install and run every test (SQLite unless DATABASE_URL names PostgreSQL)
test: $(STAMP)
	PIAOTONG_TESTING=1 $(BIN)/pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PIAOTONG_TESTING=1 $(BIN)/piaotong check
	PIAOTONG_TESTING=1 $(BIN)/piaotong makemigrations --check --dry-run

bench: $(STAMP)
	$(BIN)/python bench/issue.py
	$(BIN)/python bench/web.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/documents.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/reconcile.py
	$(BIN)/python bench/filing.py

clean:
	rm -rf $(VENV) var
