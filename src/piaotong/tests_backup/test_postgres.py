"""The PostgreSQL round trip: demo data, backup, a dropped and recreated database, restore.

It uses a throwaway database on the server at PGHOST/PGPORT/PGUSER (default
postgres@127.0.0.1:5432 with trust authentication, as `.ci/run` does) and is skipped when the
server or the client tools are missing, whatever database the rest of the suite runs on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from piaotong.tests_backup.nodes import Node, without_audit

pytestmark = pytest.mark.postgres

HOST = "127.0.0.1"
PORT = "5432"
USER = "postgres"


def server() -> tuple[str, str, str]:
    return (
        os.environ.get("PGHOST", HOST),
        os.environ.get("PGPORT", PORT),
        os.environ.get("PGUSER", USER),
    )


def psql(sql: str) -> subprocess.CompletedProcess[str]:
    host, port, user = server()
    psql_path = shutil.which("psql") or "psql"
    argv = [psql_path, "-h", host, "-p", port, "-U", user, "-d", "postgres", "-qc", sql]
    # Fixed SQL of this module with generated database names; no shell.
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603


@pytest.fixture
def pg_node(tmp_path: Path) -> Iterator[tuple[Node, str]]:
    missing = [tool for tool in ("psql", "pg_dump", "pg_restore") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"PostgreSQL client tools missing: {', '.join(missing)}")
    probe = psql("SELECT 1")
    if probe.returncode != 0:
        pytest.skip(f"no PostgreSQL server reachable: {probe.stderr.strip()}")
    host, port, user = server()
    name = f"piaotong_backup_{uuid.uuid4().hex[:12]}"
    assert psql(f'CREATE DATABASE "{name}"').returncode == 0
    node = Node(tmp_path / "node", f"postgres://{user}@{host}:{port}/{name}")
    node.root.mkdir()
    try:
        yield node, name
    finally:
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_it_restores_a_postgresql_node_into_a_recreated_database(pg_node: tuple[Node, str]) -> None:
    node, name = pg_node
    node.run("demo", "--invoices-per-org", "5")
    before, keys = node.dump(), node.key_files()
    archive = node.root / "pg.ptbk"
    assert "pg_dump" in node.run("backup", "--output", str(archive)).stdout
    refused = node.run("restore", str(archive), check=False)
    assert refused.returncode == 1 and "this node is not empty" in refused.stderr
    # The machine is lost: a new database, set up as `piaotong serve` would (tables, no rows),
    # and no signing key.
    assert psql(f'DROP DATABASE "{name}" WITH (FORCE)').returncode == 0
    assert psql(f'CREATE DATABASE "{name}"').returncode == 0
    shutil.rmtree(node.key_dir)
    node.run("migrate", "--verbosity", "0")
    result = node.run("restore", str(archive))
    assert "Restored and verified:" in result.stdout
    after = node.dump()
    assert without_audit(after) == without_audit(before)
    assert len(after["invoices.invoice"]) >= 15
    assert after["ledger.auditentry"][:-1] == before["ledger.auditentry"]
    assert node.key_files() == keys
    events = len(before["ledger.ledgerevent"])
    assert node.run("ledger", "verify").stdout.startswith(f"OK: {events} ledger events")
