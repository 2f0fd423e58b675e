"""Facts about a database: what the manifest records and a restore is checked against.

Row counts of our tables, the chain heads, the latest migration per app, and what the node
holds (an empty node holds no invoices, organisations or ledger events).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from django.apps import apps
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from piaotong.accounts.models import Organisation
from piaotong.backup.database import sqlite_file
from piaotong.backup.reporting import BackupError
from piaotong.invoices.models import Invoice
from piaotong.ledger.actions import AUDIT_CHAIN
from piaotong.ledger.models import ChainHead, LedgerEvent

# What makes a node "not empty": restoring over these would lose issued facts.
HOLDINGS = {"invoices": Invoice, "organisations": Organisation, "ledger events": LedgerEvent}


class _Cursor(Protocol):
    def execute(self, sql: str, /) -> object: ...
    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class DatabaseFacts:
    """Row counts of our tables, the chain heads and the latest applied migration per app."""

    row_counts: dict[str, int]
    chain_heads: dict[str, dict[str, Any]]
    migrations: dict[str, str]

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> DatabaseFacts:
        ledger = manifest["ledger"]
        return cls(manifest["row_counts"], ledger["chain_heads"], manifest["migrations"])

    def summary(self) -> str:
        audit = self.chain_heads.get(AUDIT_CHAIN, {"seq": 0, "hash": ""})
        return (
            f"{len(self.row_counts)} tables, {sum(self.row_counts.values())} rows: "
            f"{self.count(Invoice)} invoices, {self.count(LedgerEvent)} ledger events, "
            f"audit chain at #{audit['seq']} {audit['hash'][:12]}"
        )

    def count(self, model: type[Any]) -> int:
        return self.row_counts.get(model._meta.db_table, 0)


def our_tables() -> list[str]:
    """Tables of Piaotong's own apps (not Django's sessions, permissions and the like)."""
    return sorted(
        model._meta.db_table
        for config in apps.get_app_configs()
        if config.name.startswith("piaotong")
        for model in config.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    )


def database_facts(
    cursor: _Cursor, existing: set[str], quote: Callable[[str], str]
) -> DatabaseFacts:
    if "django_migrations" not in existing:
        raise BackupError("the database has no tables: run `piaotong migrate` first")
    counts = {}
    for table in (t for t in our_tables() if t in existing):
        # Table names come from our models and are quoted by the backend: no input reaches SQL.
        cursor.execute(f"SELECT COUNT(*) FROM {quote(table)}")  # noqa: S608
        counts[table] = int(cursor.fetchall()[0][0])
    cursor.execute(f"SELECT name, seq, hash FROM {quote(ChainHead._meta.db_table)}")  # noqa: S608
    heads = {name: {"seq": int(seq), "hash": hash_} for name, seq, hash_ in cursor.fetchall()}
    cursor.execute("SELECT app, name FROM django_migrations")
    return DatabaseFacts(counts, dict(sorted(heads.items())), latest_per_app(cursor.fetchall()))


def latest_per_app(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The latest applied migration of each app (names sort by their number prefix).

    >>> latest_per_app([("invoices", "0002_x"), ("invoices", "0001_initial"), ("auth", "0001_a")])
    {'auth': '0001_a', 'invoices': '0002_x'}
    """
    latest: dict[str, str] = {}
    for app, name in rows:
        latest[app] = max(name, latest.get(app, name))
    return dict(sorted(latest.items()))


def live_facts() -> DatabaseFacts:
    """Facts of the configured database, through Django's connection."""
    with connection.cursor() as cursor:
        existing = set(connection.introspection.table_names(cursor))
        return database_facts(cursor, existing, connection.ops.quote_name)


def compare_facts(expected: DatabaseFacts, actual: DatabaseFacts) -> list[str]:
    """Every difference, worded for the operator.

    >>> a = DatabaseFacts({"t": 2}, {"audit": {"seq": 3, "hash": "ab"}}, {"x": "0001_a"})
    >>> compare_facts(a, DatabaseFacts({"t": 1}, {}, {"x": "0001_a"}))
    ['rows in t: archive 2, restored 1', 'chain head audit: archive {"seq": 3, "hash": "ab"}, restored null']
    """
    problems = []
    sections: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("rows in", expected.row_counts, actual.row_counts),
        ("chain head", expected.chain_heads, actual.chain_heads),
        ("latest migration of", expected.migrations, actual.migrations),
    ]
    for label, want, got in sections:
        for name in sorted(want.keys() | got.keys()):
            if want.get(name) != got.get(name):
                problems.append(
                    f"{label} {name}: archive {json.dumps(want.get(name))}, "
                    f"restored {json.dumps(got.get(name))}"
                )
    return problems


def unknown_migrations(latest: dict[str, str]) -> list[str]:
    known = MigrationLoader(None, ignore_no_migrations=True).disk_migrations
    return [f"{app}.{name}" for app, name in latest.items() if (app, name) not in known]


def node_holdings() -> dict[str, int]:
    """How many invoices, organisations and ledger events the node holds (none: empty)."""
    sqlite_path = sqlite_file()
    if sqlite_path is not None and (not sqlite_path.exists() or sqlite_path.stat().st_size == 0):
        return {}  # Checked first: connecting would create the file.
    existing = set(connection.introspection.table_names())
    return {
        label: model._default_manager.count()
        for label, model in HOLDINGS.items()
        if model._meta.db_table in existing
    }
