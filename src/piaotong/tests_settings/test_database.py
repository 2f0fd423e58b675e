"""DATABASES from the environment: PostgreSQL's prepared statements (预备语句), on by default and
switched off for a pooler in transaction mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from piaotong import fastsql, settings
from piaotong.accounts.models import Organisation

PG_URL = "postgres://piaotong@db.example:5432/piaotong"
VARIABLE = "PIAOTONG_PG_PREPARE_THRESHOLD"


def options(monkeypatch: pytest.MonkeyPatch, url: str, threshold: str | None) -> dict[str, object]:
    monkeypatch.setenv("DATABASE_URL", url)
    if threshold is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, threshold)
    found = settings._database()["OPTIONS"]
    assert isinstance(found, dict)
    return found


def test_it_prepares_after_five_executions_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert options(monkeypatch, PG_URL, None)["prepare_threshold"] == 5


@pytest.mark.parametrize(("raw", "expected"), [("off", None), ("OFF", None), ("1", 1), ("20", 20)])
def test_it_takes_a_count_or_off(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int | None
) -> None:
    assert options(monkeypatch, PG_URL, raw)["prepare_threshold"] == expected


@pytest.mark.parametrize("raw", ["", "0", "-1", "five", "5.0", "none"])
def test_it_refuses_anything_else_and_says_what_to_use(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"{VARIABLE}=.*count.*off"):
        options(monkeypatch, PG_URL, raw)


def test_sqlite_has_no_prepared_statements_to_configure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found = options(monkeypatch, f"sqlite:///{tmp_path}/db.sqlite3", "off")
    assert "prepare_threshold" not in found


@pytest.mark.django_db
def test_it_prepares_the_hot_statements_and_the_orm_repeats(org_a: Organisation) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    if threshold is None:
        pytest.skip(f"{VARIABLE}=off in this run")

    def prepared() -> list[str]:
        found = connection.connection.execute(
            "SELECT statement FROM pg_prepared_statements", prepare=False
        )
        return [row[0] for row in found.fetchall()]

    hot = "SELECT %s::int + 1 AS hot_statement"
    assert fastsql.Rows(hot, [1]).first() == (2,)
    assert [s for s in prepared() if "hot_statement" in s]  # fastsql asks at once

    for _ in range(threshold + 1):
        assert Organisation.objects.filter(pk=org_a.pk, name__startswith="北京").exists()
    assert [s for s in prepared() if "LIKE" in s and "accounts_organisation" in s]
