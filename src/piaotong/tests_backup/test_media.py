"""Uploaded files (MEDIA_ROOT) in archives: backed up, verified, restored and checked afterwards.

The source node holds one registration application with two qualification documents, made by
`do_apply_for_registration` inside the node, and one stray file in MEDIA_ROOT (every file is
backed up). Altered archives are re-sealed with the backup key, as an attacker holding it could:
only the checks on the members stand between them and the node.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from piaotong.backup import parse_key
from piaotong.backup.archive import (
    CHUNK_SIZE,
    CIPHER_AES_256_GCM,
    ChunkSealer,
    Header,
    payload_reader,
)
from piaotong.backup.keys import key_id
from piaotong.backup.restore import unpack_archive
from piaotong.tests_backup.nodes import KEY, Node, rewrite_checksum, without_audit

REGISTER_SCRIPT = """
from piaotong.accounts.registration import (
    DocumentUpload, RegistrationApplication, do_apply_for_registration,
)
from piaotong.lib.taxid import compose_uscc
application = RegistrationApplication(
    name="北京新申请科技有限公司", tax_id=compose_uscc("9", "1", "110108", "MA01REG1"),
    taxpayer_kind="general", address="北京市海淀区申请路 1 号", phone="010-60000001",
    username="applicant", full_name="申请人", email="applicant@example.com",
    password="correct-horse-battery",
)
PDF = b"%PDF-1.7\\n1 0 obj <<>> endobj\\n%%EOF\\n"
PNG = b"\\x89PNG\\r\\n\\x1a\\n" + bytes(32)
do_apply_for_registration(
    application, [DocumentUpload("营业执照.pdf", PDF), DocumentUpload("门头照.png", PNG)]
)
"""
STRAY = "notes/readme.txt"
Members = list[tuple[tarfile.TarInfo, bytes]]


@dataclass(frozen=True)
class Source:
    node: Node
    archive: Path

    @property
    def media(self) -> Path:
        return self.node.root / "var" / "media"

    def media_files(self) -> dict[str, bytes]:
        return media_of(self.node)


def media_of(node: Node) -> dict[str, bytes]:
    root = node.root / "var" / "media"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    node = Node.sqlite(tmp_path_factory.mktemp("media-source") / "node")
    node.run("migrate", "--verbosity", "0")
    node.run("shell", "--no-imports", "-c", REGISTER_SCRIPT)
    stray = node.root / "var" / "media" / STRAY
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"not a document, backed up all the same\n")
    archive = node.root.parent / "node.ptbk"
    node.run("backup", "--output", str(archive))
    return Source(node, archive)


def refused(node: Node, *args: str) -> str:
    result = node.run("restore", *args, check=False)
    assert result.returncode == 1, result.stdout
    assert "Nothing was restored" in result.stderr
    return result.stderr


def rewrite_archive(
    archive: Path, dest: Path, edit: Callable[[Members], Members], version: int | None = None
) -> Path:
    """The archive's members edited, re-sealed with the backup key, with a matching checksum."""
    key = parse_key(KEY)
    with open(archive, "rb") as file:
        raw = payload_reader(file, key).read(-1)
    members: Members = []
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw)), mode="r:") as tar:
        for info in tar:
            extracted = tar.extractfile(info)
            members.append((info, extracted.read() if extracted else b""))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in edit(members):
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    header = Header(CIPHER_AES_256_GCM, CHUNK_SIZE, key_id(key), os.urandom(32), os.urandom(7))
    if version is not None:
        header = replace(header, version=version)
    out = io.BytesIO()
    out.write(header.pack())
    sealer = ChunkSealer(out, key, header)
    sealer.write(gzip.compress(buffer.getvalue()))
    sealer.finish()
    dest.write_bytes(out.getvalue())
    rewrite_checksum(dest)
    return dest


def test_it_backs_up_every_media_file_with_its_checksum(source: Source, tmp_path: Path) -> None:
    manifest = unpack_archive(source.archive, parse_key(KEY), tmp_path)
    files = source.media_files()
    assert len(files) == 3 and STRAY in files
    assert manifest["format_version"] == 2
    assert manifest["media"]["count"] == 3
    assert manifest["media"]["files"] == {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in files.items()
    }
    for name, data in files.items():
        assert (tmp_path / "media" / name).read_bytes() == data


def test_it_restores_uploaded_documents_and_checks_them(source: Source, tmp_path: Path) -> None:
    empty = Node.sqlite(tmp_path / "empty")
    result = empty.run("restore", str(source.archive))
    assert "Media files restored: 3" in result.stdout
    assert "Restored and verified:" in result.stdout
    assert media_of(empty) == source.media_files()
    docs = empty.dump()["accounts.qualificationdocument"]
    assert len(docs) == 2
    assert without_audit(empty.dump()) == without_audit(source.node.dump())
    for path in (empty.root / "var" / "media").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600)
    assert not list((empty.root / "var").glob(".media-restoring-*"))


def test_it_sets_a_populated_media_directory_aside_when_forced(
    source: Source, tmp_path: Path
) -> None:
    node = source.node.copy_to(tmp_path / "populated")
    own = node.root / "var" / "media" / "own.txt"
    own.write_bytes(b"the replaced node's file")
    result = node.run("restore", "--force", str(source.archive))
    assert "Restored and verified:" in result.stdout
    assert media_of(node) == source.media_files()
    (aside,) = (node.root / "var").glob("media.replaced-*")
    assert (aside / "own.txt").read_bytes() == b"the replaced node's file"


def test_it_reports_a_document_whose_file_differs_after_restore(
    source: Source, tmp_path: Path
) -> None:
    (name,) = [n for n in source.media_files() if n.endswith(".pdf")]

    def alter(members: Members) -> Members:
        # The manifest agrees with the altered file: only the post-restore check can tell.
        manifest = json.loads(members[0][1])
        altered = b"%PDF-1.7 altered\n"
        entry = {"size": len(altered), "sha256": hashlib.sha256(altered).hexdigest()}
        manifest["media"]["files"][name] = entry
        edited = [(members[0][0], json.dumps(manifest).encode())]
        return edited + [(i, altered if i.name == f"media/{name}" else d) for i, d in members[1:]]

    archive = rewrite_archive(source.archive, tmp_path / "altered.ptbk", alter)
    empty = Node.sqlite(tmp_path / "empty")
    result = empty.run("restore", str(archive), check=False)
    assert result.returncode == 1
    assert f"({name}): file has SHA-256" in result.stderr


def test_it_refuses_a_tampered_media_member_and_changes_nothing(
    source: Source, tmp_path: Path
) -> None:
    def tamper(members: Members) -> Members:
        return [(i, d + b"x" if i.name.startswith("media/") else d) for i, d in members]

    archive = rewrite_archive(source.archive, tmp_path / "tampered.ptbk", tamper)
    node = source.node.copy_to(tmp_path / "populated")
    before = node.fingerprint()
    assert "does not match the SHA-256 in the manifest" in refused(node, "--force", str(archive))
    assert node.fingerprint() == before


@pytest.mark.parametrize("name", ["media/../evil", "media//evil", "media/./evil", "media/a/../b"])
def test_it_refuses_a_media_member_that_could_escape(
    source: Source, tmp_path: Path, name: str
) -> None:
    def add_evil(members: Members) -> Members:
        return [*members, (tarfile.TarInfo(name), b"evil")]

    archive = rewrite_archive(source.archive, tmp_path / "evil.ptbk", add_evil)
    node = source.node.copy_to(tmp_path / "populated")
    before = node.fingerprint()
    assert f"unexpected archive member {name!r}" in refused(node, "--force", str(archive))
    assert node.fingerprint() == before
    assert not list(tmp_path.rglob("evil"))


def test_it_refuses_a_media_symlink_member(source: Source, tmp_path: Path) -> None:
    def add_link(members: Members) -> Members:
        link = tarfile.TarInfo("media/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        return [*members, (link, b"")]

    archive = rewrite_archive(source.archive, tmp_path / "link.ptbk", add_link)
    empty = Node.sqlite(tmp_path / "empty")
    assert "unexpected archive member 'media/link'" in refused(empty, str(archive))
    assert not empty.database.exists()


def _as_version_1(members: Members) -> Members:
    manifest = json.loads(members[0][1])
    manifest["format_version"] = 1
    del manifest["media"]
    kept = [(i, d) for i, d in members[1:] if not i.name.startswith("media/")]
    return [(members[0][0], json.dumps(manifest).encode()), *kept]


def test_it_still_restores_a_version_1_archive_without_media(tmp_path: Path) -> None:
    old = Node.sqlite(tmp_path / "old")
    old.run("migrate", "--verbosity", "0")
    old.run("backup", "--output", str(tmp_path / "new.ptbk"))
    archive = rewrite_archive(tmp_path / "new.ptbk", tmp_path / "v1.ptbk", _as_version_1, 1)
    assert archive.read_bytes()[8] == 1
    empty = Node.sqlite(tmp_path / "empty")
    result = empty.run("restore", str(archive))
    assert "holds no media: MEDIA_ROOT unchanged" in result.stdout
    assert "Restored and verified:" in result.stdout


def test_it_reports_documents_a_version_1_archive_lacks(source: Source, tmp_path: Path) -> None:
    archive = rewrite_archive(source.archive, tmp_path / "v1.ptbk", _as_version_1, 1)
    empty = Node.sqlite(tmp_path / "empty")
    result = empty.run("restore", str(archive), check=False)
    assert result.returncode == 1 and "Nothing was restored" not in result.stderr
    assert result.stderr.count(": file missing, the database records SHA-256") == 2
