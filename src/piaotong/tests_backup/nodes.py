"""Nodes for the command tests: each in its own directory, driven through `piaotong` subprocesses.

pytest-django's SQLite database lives in memory, where neither the online backup API of another
process nor a file swap can reach it; a node of its own runs the real commands on a real file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from piaotong.backup import generate_key
from piaotong.lib.fieldcrypto import generate_key_line

KEY = generate_key()
# Field keys are not in archives (docs/operations.md): every node of a test shares them, as an
# operator restoring a node gives it the field keys kept beside the backup key.
FIELD_KEYS = generate_key_line("test1")
APPS = [
    "accounts",
    "invoices",
    "ledger",
    "exchange",
    "api",
    "documents",
    "verification",
    "deduction",
    "reconciliation",
    "filing",
    "support",
]
Dump = dict[str, list[dict[str, Any]]]
# Run inside the node: `dumpdata` of every model of our apps whose table exists there (a model
# whose migration is still being written would otherwise fail the whole dump).
DUMP_SCRIPT = f"""
from django.apps import apps
from django.core.management import call_command
from django.db import connection
tables = set(connection.introspection.table_names())
models = [m for a in {APPS!r} for m in apps.get_app_config(a).get_models()]
call_command("dumpdata", *[m._meta.label_lower for m in models if m._meta.db_table in tables])
"""


@dataclass(frozen=True)
class Node:
    """A node's directory (SQLite file, var/, keys) and the environment its commands run with."""

    root: Path
    database_url: str
    backup_key: str | None = KEY
    extra_env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def sqlite(cls, root: Path) -> Node:
        root.mkdir(parents=True, exist_ok=True)
        return cls(root, f"sqlite:///{root / 'db.sqlite3'}")

    def but(self, **changes: Any) -> Node:
        return replace(self, **changes)

    @property
    def database(self) -> Path:
        return self.root / "db.sqlite3"

    @property
    def key_dir(self) -> Path:
        return self.root / "var" / "keys"

    def env(self) -> dict[str, str]:
        # The outer environment's node settings (CI sets PIAOTONG_VAR_DIR, DATABASE_URL) must
        # not leak into the node under test.
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("PIAOTONG_", "DJANGO_"))}
        keep.pop("DATABASE_URL", None)
        env = keep | {
            "PIAOTONG_VAR_DIR": str(self.root / "var"),
            "DATABASE_URL": self.database_url,
            "PIAOTONG_TESTING": "1",
            "PIAOTONG_FIELD_KEYS": FIELD_KEYS,
        }
        if self.backup_key:
            env["PIAOTONG_BACKUP_KEY"] = self.backup_key
        return env | dict(self.extra_env)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "piaotong.cli", *args]
        # A fixed interpreter and our own command line: nothing untrusted is executed.
        result = subprocess.run(  # noqa: S603
            argv, cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise AssertionError(f"piaotong {' '.join(args)} failed:\n{result.stderr}")
        return result

    def dump(self) -> Dump:
        """Every row of our apps, grouped by model, in primary-key order (`dumpdata`)."""
        rows: Dump = defaultdict(list)
        for row in json.loads(self.run("shell", "--no-imports", "-c", DUMP_SCRIPT).stdout):
            rows[row["model"]].append(row)
        return dict(rows)

    def key_files(self) -> dict[str, bytes]:
        files = self.key_dir.glob("*") if self.key_dir.is_dir() else []
        return {p.name: p.read_bytes() for p in files if not p.name.startswith(".")}

    def fingerprint(self) -> dict[str, str]:
        """SHA-256 of every file under the node's directory: proof that nothing changed."""
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }

    def copy_to(self, root: Path) -> Node:
        shutil.copytree(self.root, root)
        return self.but(root=root, database_url=f"sqlite:///{root / 'db.sqlite3'}")


def without_audit(dump: Dump) -> Dump:
    """A dump without the audit chain, which a restore extends by the entry recording it."""
    return {
        m: rows for m, rows in dump.items() if m not in {"ledger.auditentry", "ledger.chainhead"}
    }


def copy_archive(archive: Path, dest_dir: Path, data: bytes | None = None) -> Path:
    """A copy of an archive and its checksum file; with `data`, the archive's bytes replaced."""
    dest = dest_dir / archive.name
    dest.write_bytes(archive.read_bytes() if data is None else data)
    shutil.copy(f"{archive}.sha256", f"{dest}.sha256")
    return dest


def rewrite_checksum(archive: Path) -> None:
    """What an attacker who can write the checksum file does after altering the archive."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")
