"""`piaotong backup` and `piaotong restore` on SQLite nodes of their own (see nodes.py).

One source node is built and backed up per module (demo data, about 5 s); each test restores
that archive, or an altered copy, into a fresh or populated node.
"""

from __future__ import annotations

import hashlib
import io
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command

from piaotong.backup import generate_key, key_id, parse_key
from piaotong.backup.archive import HEADER_SIZE
from piaotong.backup.restore import unpack_archive
from piaotong.tests_backup.nodes import (
    KEY,
    Dump,
    Node,
    copy_archive,
    rewrite_checksum,
    without_audit,
)


@dataclass(frozen=True)
class Source:
    node: Node
    before: Dump  # every row, as the archive should hold them
    archive: Path

    def count(self, model: str) -> int:
        return len(self.before[model])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    node = Node.sqlite(tmp_path_factory.mktemp("source") / "node")
    node.run("demo", "--invoices-per-org", "5")
    before = node.dump()
    archive = node.root.parent / "node.ptbk"
    node.run("backup", "--output", str(archive))
    return Source(node, before, archive)


@pytest.fixture
def empty_node(tmp_path: Path) -> Node:
    return Node.sqlite(tmp_path / "empty")


@pytest.fixture
def populated_node(source: Source, tmp_path: Path) -> Node:
    return source.node.copy_to(tmp_path / "populated")


def refused(node: Node, *args: str) -> str:
    result = node.run("restore", *args, check=False)
    assert result.returncode == 1, result.stdout
    assert "Nothing was restored" in result.stderr
    return result.stderr


def test_it_restores_every_invoice_ledger_event_and_the_audit_chain(
    source: Source, empty_node: Node
) -> None:
    result = empty_node.run("restore", str(source.archive))
    assert "Restored and verified:" in result.stdout
    after = empty_node.dump()
    assert without_audit(after) == without_audit(source.before)
    invoices = after["invoices.invoice"]
    assert len(invoices) >= 15 and all(i["fields"]["signature"] for i in invoices)
    facts = ["number", "total_amount", "total_tax", "signature", "payload_hash"]
    assert [[i["fields"][f] for f in facts] for i in invoices] == [
        [i["fields"][f] for f in facts] for i in source.before["invoices.invoice"]
    ]
    hashes = [e["fields"]["hash"] for e in after["ledger.ledgerevent"]]
    assert len(hashes) >= 15 and hashes == [
        e["fields"]["hash"] for e in source.before["ledger.ledgerevent"]
    ]
    audit_before, audit_after = source.before["ledger.auditentry"], after["ledger.auditentry"]
    assert audit_after[:-1] == audit_before
    restored = audit_after[-1]["fields"]
    assert restored["action"] == "node.restored"
    assert restored["prev_hash"] == audit_before[-1]["fields"]["hash"]
    events = source.count("ledger.ledgerevent")
    assert empty_node.run("ledger", "verify").stdout.startswith(f"OK: {events} ledger events")


def test_it_restores_the_signing_key_readable_only_by_its_owner(
    source: Source, empty_node: Node
) -> None:
    empty_node.run("restore", str(source.archive))
    assert empty_node.key_files() == source.node.key_files() != {}
    for name in empty_node.key_files():
        assert stat.S_IMODE((empty_node.key_dir / name).stat().st_mode) == 0o600


def test_it_writes_a_manifest_of_counts_chain_head_and_member_checksums(
    source: Source, tmp_path: Path
) -> None:
    manifest = unpack_archive(source.archive, parse_key(KEY), tmp_path)
    audit = source.before["ledger.auditentry"]
    assert manifest["node"] == {"id": "node-11", "region": "11", "channel": "2"}
    assert manifest["database"] == {"vendor": "sqlite", "member": "database.sqlite3"}
    assert manifest["created_at"].endswith("Z")
    assert manifest["row_counts"]["invoices_invoice"] == source.count("invoices.invoice")
    assert manifest["ledger"]["events"] == source.count("ledger.ledgerevent")
    assert manifest["ledger"]["chain_heads"]["audit"] == {
        "seq": len(audit),
        "hash": audit[-1]["fields"]["hash"],
    }
    assert manifest["migrations"]["invoices"] == _latest_migration("invoices")
    key = (source.node.key_dir / "node-11.ed25519.pem").read_bytes()
    assert manifest["members"]["keys/node-11.ed25519.pem"] == {
        "size": len(key),
        "sha256": hashlib.sha256(key).hexdigest(),
    }


def test_it_writes_the_checksum_in_sha256sum_format_and_a_private_archive(source: Source) -> None:
    digest = hashlib.sha256(source.archive.read_bytes()).hexdigest()
    checksum = Path(f"{source.archive}.sha256").read_text()
    assert checksum == f"{digest}  {source.archive.name}\n"
    assert stat.S_IMODE(source.archive.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("forge_checksum", "message"),
    [(False, "the archive was altered, truncated or damaged"), (True, "failed authentication")],
    ids=["caught-by-checksum", "caught-by-authentication"],
)
def test_it_refuses_a_tampered_archive_and_changes_nothing(
    source: Source, populated_node: Node, tmp_path: Path, forge_checksum: bool, message: str
) -> None:
    data = bytearray(source.archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive = copy_archive(source.archive, tmp_path, bytes(data))
    if forge_checksum:
        rewrite_checksum(archive)
    before = populated_node.fingerprint()
    # --force: only the archive's own checks stand between it and the node.
    assert message in refused(populated_node, "--force", str(archive))
    assert populated_node.fingerprint() == before


@pytest.mark.parametrize("keep", [HEADER_SIZE, -1], ids=["only-header", "last-byte-cut"])
def test_it_refuses_a_truncated_archive_even_with_a_matching_checksum(
    source: Source, populated_node: Node, tmp_path: Path, keep: int
) -> None:
    archive = copy_archive(source.archive, tmp_path, source.archive.read_bytes()[:keep])
    rewrite_checksum(archive)
    before = populated_node.fingerprint()
    assert "failed authentication" in refused(populated_node, "--force", str(archive))
    assert populated_node.fingerprint() == before


def test_it_refuses_the_wrong_key_naming_the_one_it_needs(source: Source, empty_node: Node) -> None:
    wrong = empty_node.but(backup_key=generate_key())
    stderr = refused(wrong, str(source.archive))
    assert f"needs key id {key_id(parse_key(KEY)).hex()}" in stderr
    assert not empty_node.database.exists()


def test_it_asks_for_the_key_when_none_is_set(source: Source, empty_node: Node) -> None:
    stderr = refused(empty_node.but(backup_key=None), str(source.archive))
    assert "the archive is encrypted" in stderr and "set PIAOTONG_BACKUP_KEY" in stderr


def test_it_refuses_to_back_up_without_a_key(populated_node: Node) -> None:
    result = populated_node.but(backup_key=None).run("backup", "--output", "x.ptbk", check=False)
    assert result.returncode == 1
    assert "PIAOTONG_BACKUP_KEY is not set" in result.stderr
    assert "--generate-key" in result.stderr
    assert not (populated_node.root / "x.ptbk").exists()


def test_it_writes_and_restores_an_unencrypted_archive_only_when_asked(
    populated_node: Node, empty_node: Node
) -> None:
    keyless = populated_node.but(backup_key=None)
    result = keyless.run("backup", "--unencrypted", "--output", "plain.ptbk")
    assert "WARNING: --unencrypted" in result.stderr
    archive = str(populated_node.root / "plain.ptbk")
    assert "not encrypted, so nothing proves who made it" in refused(empty_node, archive)
    result = empty_node.run("restore", "--unencrypted", archive)
    assert "Restored and verified" in result.stdout


def test_it_refuses_a_node_that_holds_data_unless_forced(
    source: Source, populated_node: Node
) -> None:
    before = populated_node.dump()
    stderr = refused(populated_node, str(source.archive))
    held = [
        f"{source.count('invoices.invoice')} invoices",
        f"{source.count('accounts.organisation')} organisations",
        f"{source.count('ledger.ledgerevent')} ledger events",
    ]
    assert f"not empty (it holds {', '.join(held)})" in stderr
    assert populated_node.dump() == before
    populated_node.run("restore", "--force", str(source.archive))
    assert without_audit(populated_node.dump()) == without_audit(source.before)


def test_it_sets_a_different_signing_key_aside_only_when_forced(
    source: Source, empty_node: Node
) -> None:
    empty_node.key_dir.mkdir(parents=True)
    own_key = empty_node.key_dir / "node-11.ed25519.pem"
    own_key.write_bytes(b"another node's key")
    assert "exists and differs from the archive's key" in refused(empty_node, str(source.archive))
    assert own_key.read_bytes() == b"another node's key"
    assert not empty_node.database.exists()
    result = empty_node.run("restore", "--force", str(source.archive))
    assert "A different key was set aside" in result.stdout
    assert empty_node.key_files()["node-11.ed25519.pem"] == source.node.key_files()[own_key.name]
    (aside,) = empty_node.key_dir.glob("node-11.ed25519.pem.replaced-*")
    assert aside.read_bytes() == b"another node's key"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DATABASE_URL": "postgres://nobody@127.0.0.1:9/none"},
            "holds a sqlite database but this node is configured for postgresql",
        ),
        (
            {"PIAOTONG_NODE_ID": "node-31", "PIAOTONG_REGION": "31"},
            "the archive is of node node-11 (region 11) but this is node node-31",
        ),
    ],
    ids=["other-database-vendor", "other-node"],
)
def test_it_refuses_an_archive_of_another_kind_of_node(
    source: Source, empty_node: Node, env: dict[str, str], message: str
) -> None:
    assert message in refused(empty_node.but(extra_env=tuple(env.items())), str(source.archive))
    assert not empty_node.database.exists()


def test_it_generates_a_key_that_backups_accept() -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("backup", generate_key=True, stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert len(parse_key(key)) == 32
    assert key_id(parse_key(key)).hex() in err.getvalue()


def _latest_migration(app: str) -> str:
    from django.db.migrations.loader import MigrationLoader

    return max(name for label, name in MigrationLoader(None).disk_migrations if label == app)
