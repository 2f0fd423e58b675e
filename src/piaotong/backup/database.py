"""The configured database where Django's connection does not reach: its file, its tools.

SQLite is copied and replaced as a file; PostgreSQL is dumped and restored by its client tools
(pg_dump, pg_restore).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from django.db import connection

from piaotong.backup.reporting import BackupError


def sqlite_file() -> Path | None:
    """The SQLite database file, or None for PostgreSQL and in-memory test databases."""
    name = str(connection.settings_dict["NAME"])
    if connection.vendor != "sqlite" or name == ":memory:" or "mode=memory" in name:
        return None
    return Path(name)


def pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not on PATH: install the PostgreSQL client tools of the server's major "
            "version or newer (Debian: apt install postgresql-client)"
        )
    return path


def pg_connection() -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore from DATABASES['default'].

    The password travels in PGPASSWORD, never on the command line where `ps` shows it.
    """
    db = connection.settings_dict
    args = [f"--dbname={db['NAME']}", "--no-password"]
    args += [f"--{opt}={db[key]}" for opt, key in _PG_OPTIONS if db.get(key)]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = str(db["PASSWORD"])
    return args, env


_PG_OPTIONS = [("host", "HOST"), ("port", "PORT"), ("username", "USER")]


def run_tool(argv: list[str], env: dict[str, str]) -> None:
    # Arguments come from settings and our own temporary paths, without a shell.
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = result.stderr.strip()[-2000:]
        raise BackupError(f"{Path(argv[0]).name} failed (exit {result.returncode}): {detail}")
