"""Taking a backup (备份): the database snapshot, signing keys, media and manifest, as one archive.

The snapshot (快照) is taken while the node runs: see the terms in piaotong.backup.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.db import connection, transaction

from piaotong.accounts.access import Actor
from piaotong.backup.archive import (
    DATABASE_MEMBERS,
    KEYS,
    MANIFEST,
    MAX_CHUNK_SIZE,
    MEDIA,
    HashingWriter,
    Sink,
    checksum_path,
    file_digest,
    media_relative,
    payload_writer,
)
from piaotong.backup.database import pg_connection, pg_tool, run_tool, sqlite_file
from piaotong.backup.facts import DatabaseFacts, database_facts
from piaotong.backup.files import create_private, fsync_dir
from piaotong.backup.keys import key_id
from piaotong.backup.manifest import build_manifest
from piaotong.backup.reporting import BackupError, Progress, human_size
from piaotong.ledger.actions import record_audit


@dataclass(frozen=True)
class BackupResult:
    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any]
    key_id: str | None


def default_output() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.VAR_DIR / "backups" / f"piaotong-{settings.PIAOTONG_NODE_ID}-{stamp}.ptbk"


def create_backup(output: Path | None, key: bytes | None, progress: Progress) -> BackupResult:
    """Snapshot the database, then write it, the signing keys and the manifest as one archive."""
    path = _output_path(output)
    created_at = datetime.now(UTC)
    # Staged beside the output: the snapshot is as large as the database, /tmp may be small.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".piaotong-backup-") as staging:
        vendor = connection.vendor
        database = Path(staging) / DATABASE_MEMBERS[vendor]
        snapshot = _snapshot_sqlite if vendor == "sqlite" else _snapshot_postgres
        facts = snapshot(database, progress)
        progress(f"Snapshot: {facts.summary()}")
        # Listed after the snapshot: every document row it holds has its file stored already
        # (the file is written before the row commits).
        media = _media_files()
        progress(f"Media: {len(media)} files under {settings.MEDIA_ROOT}")
        members = {database.name: database, **_key_files()}
        digests = {rel: file_digest(path) for rel, path in media.items()}
        manifest = build_manifest(vendor, facts, members, digests, created_at)
        members |= {f"{MEDIA}/{rel}": path for rel, path in media.items()}
        encryption = f"encrypted, key id {key_id(key).hex()}" if key else "NOT encrypted"
        progress(f"Writing {path} ({encryption})")
        sha256, size = _write_archive(path, manifest, members, key, progress)
    checksum_path(path).write_text(f"{sha256}  {path.name}\n")
    result = BackupResult(path, sha256, size, manifest, key_id(key).hex() if key else None)
    _record_backup(result)
    return result


def _output_path(output: Path | None) -> Path:
    path = output or default_output()
    if path.is_dir():
        path = path / default_output().name
    if path.exists():
        raise BackupError(f"{path} exists: backups are never overwritten, choose another --output")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _key_files() -> dict[str, Path]:
    key_dir = Path(settings.PIAOTONG_KEY_DIR)
    if not key_dir.is_dir():
        return {}
    # Dot files are the lock file and editor leftovers, not keys.
    files = (p for p in sorted(key_dir.iterdir()) if p.is_file() and not p.name.startswith("."))
    return {f"{KEYS}/{p.name}": p for p in files}


def _media_files() -> dict[str, Path]:
    """Every file under MEDIA_ROOT by relative path; anything but plain files and dirs refused."""
    root = Path(settings.MEDIA_ROOT)
    if not root.is_dir():
        return {}
    files: dict[str, Path] = {}
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [*dirnames, *sorted(filenames)]:
            path = Path(directory) / name
            relative = media_relative(path.relative_to(root).as_posix())
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise BackupError(
                    f"{path} is not a plain file or directory: media holds only uploaded files. "
                    "Move it out of MEDIA_ROOT, then back up again"
                )
            if path.is_file():
                files[relative] = path
    return dict(sorted(files.items()))


def _sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _snapshot_sqlite(dest: Path, progress: Progress) -> DatabaseFacts:
    source_path = sqlite_file()
    if source_path is None or not source_path.is_file():
        raise BackupError(f"no SQLite database file at {source_path}: nothing to back up")
    progress(f"Snapshot of SQLite database {source_path} ({human_size(_db_size(source_path))})")
    # mode=rw: never create an empty database where the configured one is missing.
    source = sqlite3.connect(source_path.as_uri() + "?mode=rw", uri=True, timeout=20)
    with closing(source), closing(sqlite3.connect(dest)) as dst:
        # One step (pages=-1) reads in one transaction: a consistent state even while the
        # server writes (WAL). A stepped copy restarts whenever another process writes.
        source.backup(dst)
        # The copy inherits WAL mode; rollback-journal mode makes it one self-contained file.
        dst.execute("PRAGMA journal_mode=DELETE")
        cursor = dst.cursor()
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        existing = {row[0] for row in cursor.fetchall()}
        return database_facts(cursor, existing, _sqlite_quote)


def _db_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _snapshot_postgres(dest: Path, progress: Progress) -> DatabaseFacts:
    pg_dump = pg_tool("pg_dump")
    args, env = pg_connection()
    progress(f"Snapshot of PostgreSQL database {connection.settings_dict['NAME']} (pg_dump)")
    # pg_dump reads the snapshot this transaction exports, and the facts are counted inside the
    # same transaction: the manifest describes exactly the dumped state, whatever commits
    # meanwhile. Our gzip layer compresses, so pg_dump does not (--compress=0).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchall()[0][0]
        dump = ["--format=custom", "--compress=0", f"--snapshot={snapshot}", f"--file={dest}"]
        run_tool([pg_dump, *dump, *args], env)
        existing = set(connection.introspection.table_names(cursor))
        return database_facts(cursor, existing, connection.ops.quote_name)


def _write_archive(
    path: Path,
    manifest: dict[str, Any],
    members: dict[str, Path],
    key: bytes | None,
    progress: Progress,
) -> tuple[str, int]:
    """Write to `<path>.partial`, then rename: a failed backup never looks like a finished one."""
    partial = path.with_name(path.name + ".partial")
    # Opened before the cleanup below applies: a concurrent backup to the same path fails here
    # (O_EXCL) rather than deleting the other one's file.
    file = create_private(partial)
    try:
        with file:
            out = HashingWriter(file, progress)
            with payload_writer(out, key) as sink:
                _write_payload(sink, manifest, members)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
        fsync_dir(path.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out.sha256.hexdigest(), out.size


def _write_payload(sink: Sink, manifest: dict[str, Any], members: dict[str, Path]) -> None:
    manifest_bytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    if len(manifest_bytes) > MAX_CHUNK_SIZE:  # restore refuses a larger manifest
        raise BackupError(f"the manifest is too large ({human_size(len(manifest_bytes))})")
    mtime = datetime.now(UTC).timestamp()
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=6, mtime=0)
    with gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_member(tar, MANIFEST, len(manifest_bytes), io.BytesIO(manifest_bytes), mtime)
        for name, path in members.items():
            listed = (
                manifest["members"].get(name)
                or manifest["media"]["files"][name.removeprefix(f"{MEDIA}/")]
            )
            with open(path, "rb") as file:
                reader = _HashingReader(file)
                _add_member(tar, name, listed["size"], reader, mtime)
            if reader.sha256.hexdigest() != listed["sha256"]:
                raise BackupError(f"{path} changed while it was backed up: run the backup again")


class _HashingReader:
    """Hashes what tarfile reads: the bytes written must be the bytes the manifest lists."""

    def __init__(self, file: BinaryIO) -> None:
        self._file, self.sha256 = file, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self.sha256.update(data)
        return data


def _add_member(
    tar: tarfile.TarFile, name: str, size: int, data: BinaryIO | _HashingReader, mtime: float
) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, mtime
    tar.addfile(info, data)


def _record_backup(result: BackupResult) -> None:
    details = {"sha256": result.sha256, "bytes": result.size, "key_id": result.key_id}
    with transaction.atomic():
        record_audit(Actor(), "node.backed_up", result.path.name, details=details)
