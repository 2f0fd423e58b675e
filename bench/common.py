"""Shared plumbing for benchmarks: throwaway databases, Django set-up, result lines.

Each benchmark prints one JSON object per line (ARCHITECTURE §10) and compares itself with a
baseline measured in the same run on the same machine, because absolute times drift.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("PIAOTONG_BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(**fields: object) -> None:
    fields.setdefault("peak_rss_mb", round(peak_rss_mb(), 1))
    print(json.dumps(fields, ensure_ascii=False), flush=True)


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _psql(sql: str) -> None:
    subprocess.run(["psql", PG_ADMIN_URL, "-qc", sql], check=True, capture_output=True)


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A DATABASE_URL for a fresh, empty database of `kind`, dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="piaotong-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.sqlite3"
        return
    name = f"piaotong_bench_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_child(script: Path, kind: str, extra: list[str]) -> int:
    """Run `script --child` against a fresh database, in its own process (settings are per process)."""
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="piaotong-var-") as var:
        env = os.environ | {
            "DATABASE_URL": url,
            "PIAOTONG_VAR_DIR": var,
            "PYTHONPATH": str(ROOT / "src"),
        }
        return subprocess.run(
            [sys.executable, str(script), "--child", "--db", kind, *extra], env=env
        ).returncode


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "piaotong.settings")
    # Document rendering after issue has its own benchmark (bench/documents.py); here it would
    # compete for the same cores with what is being measured.
    os.environ.setdefault("PIAOTONG_DOCUMENTS_RENDER", "off")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
