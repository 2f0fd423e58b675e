"""Invoice documents (PDF, OFD, XML) survive a backup and a restore: the same files, byte for
byte, the same rows recording their hashes, and the restored node still checks them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from piaotong.tests_backup.nodes import Node


def _documents(node: Node) -> dict[str, str]:
    root = node.root / "var" / "media"
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and "documents" in p.relative_to(root).parts[:1]
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Node, Path]:
    node = Node.sqlite(tmp_path_factory.mktemp("docs-source") / "node")
    node.run("demo", "--invoices-per-org", "1")
    node.run("documents", "render")
    archive = node.root.parent / "node.ptbk"
    node.run("backup", "--output", str(archive))
    return node, archive


def test_it_restores_every_document_identical(source: tuple[Node, Path], tmp_path: Path) -> None:
    node, archive = source
    before = _documents(node)
    rows_before = node.dump()["documents.document"]
    assert len(rows_before) >= 9  # three invoices, three formats each
    assert len(before) == len(rows_before)

    restored = Node.sqlite(tmp_path / "restored")
    restored.run("restore", str(archive))

    assert _documents(restored) == before
    assert restored.dump()["documents.document"] == rows_before
    assert restored.run("ledger", "verify").stdout.startswith("OK")
    pdf = next(p for p in (restored.root / "var" / "media").rglob("*") if p.suffix == ".pdf")
    checked = restored.run("verify", str(pdf), check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
