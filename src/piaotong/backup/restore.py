"""Restoring (恢复) an archive into this node.

Everything that can be checked is checked before anything is touched: the checksum file, every
chunk, every member (media files included) against the manifest, the node's database kind,
migrations, node id, that the node is empty and that no other process has the database open.
Afterwards the restored database is compared with the manifest, every chain is recomputed and every
qualification document's file is checked against the SHA-256 its row records.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from piaotong.accounts.access import Actor
from piaotong.accounts.models import QualificationDocument
from piaotong.backup.archive import (
    CHUNK_SIZE,
    DATABASE_MEMBERS,
    KEYS,
    MEDIA,
    ChunkOpener,
    media_relative,
    payload_reader,
    verify_checksum,
)
from piaotong.backup.database import pg_connection, pg_tool, run_tool, sqlite_file
from piaotong.backup.facts import (
    DatabaseFacts,
    compare_facts,
    live_facts,
    node_holdings,
    unknown_migrations,
)
from piaotong.backup.files import create_private, fsync_dir
from piaotong.backup.manifest import check_members, media_files, read_manifest
from piaotong.backup.reporting import BackupError, Progress
from piaotong.exchange.recovery import do_mark_restored, recovery_needed
from piaotong.ledger.actions import record_audit
from piaotong.ledger.verify import verify_ledger

# ---- verifying an archive before anything is touched ------------------------------------------


def unpack_archive(
    path: Path, key: bytes | None, staging: Path, *, allow_unencrypted: bool = False
) -> dict[str, Any]:
    """Decrypt, authenticate and unpack the archive into `staging`; return its manifest.

    Every byte is authenticated before this returns, and every member is checked against the
    manifest, so nothing outside `staging` is touched by a damaged or altered archive.
    """
    with open(path, "rb") as file:
        source = payload_reader(file, key, allow_unencrypted=allow_unencrypted)
        try:
            with gzip.GzipFile(fileobj=source, mode="rb") as gz:
                manifest = _extract_members(gz, staging)
                # Reading to the end authenticates the last chunk and the gzip checksum.
                while gz.read(CHUNK_SIZE):
                    pass
        except (EOFError, gzip.BadGzipFile, zlib.error, tarfile.TarError) as exc:
            raise BackupError(f"the archive is damaged or truncated ({exc})") from None
    if isinstance(source, ChunkOpener) and not source.finished:
        raise BackupError("the archive is truncated: its last chunk is missing")
    return manifest


def _extract_members(gz: gzip.GzipFile, staging: Path) -> dict[str, Any]:
    manifest: dict[str, Any] | None = None
    digests: dict[str, Any] = {}
    with tarfile.open(fileobj=gz, mode="r|") as tar:
        for member in tar:
            data = tar.extractfile(member) if member.isfile() else None
            if data is None:
                raise BackupError(f"unexpected archive member {member.name!r}")
            if manifest is None:
                manifest = read_manifest(member, data)
                continue
            if member.name in digests:
                raise BackupError(f"archive member {member.name!r} appears twice")
            digests[member.name] = _extract(data, staging / _member_path(member.name))
    if manifest is None:
        raise BackupError("the archive is empty: it has no manifest")
    check_members(manifest, digests)
    return manifest


def _member_path(name: str) -> PurePosixPath:
    """Only the member names we write: no paths escape the staging directory.

    >>> str(_member_path("keys/node-11.ed25519.pem"))
    'keys/node-11.ed25519.pem'
    """
    if name.startswith(f"{MEDIA}/"):
        try:
            return PurePosixPath(MEDIA, media_relative(name.removeprefix(f"{MEDIA}/")))
        except BackupError:
            raise BackupError(f"unexpected archive member {name!r}") from None
    path = PurePosixPath(name)
    is_key = len(path.parts) == 2 and path.parts[0] == KEYS and not path.name.startswith(".")
    if name not in DATABASE_MEMBERS.values() and not is_key:
        raise BackupError(f"unexpected archive member {name!r}")
    return path


def _extract(data: IO[bytes], target: Path) -> dict[str, Any]:
    sha256, size = hashlib.sha256(), 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = create_private(target)
    except OSError:  # e.g. both media/a and media/a/b: a file where a directory goes
        raise BackupError(f"archive member {target.name!r} collides with another") from None
    with out:
        while chunk := data.read(CHUNK_SIZE):
            out.write(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": sha256.hexdigest()}


# ---- restoring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyMove:
    """A signing key to write; `replaces` when a different key of that name is there."""

    staged: Path
    target: Path
    replaces: bool


@dataclass(frozen=True)
class RestoreReport:
    manifest: dict[str, Any]
    keys_restored: list[str]
    keys_set_aside: list[Path]
    media_restored: int | None  # None: a version 1 archive, MEDIA_ROOT left as it was
    media_set_aside: Path | None
    migrated: list[str]
    problems: list[str]
    audit_seq: int


def restore_backup(
    path: Path,
    key: bytes | None,
    *,
    force: bool,
    progress: Progress,
    allow_unencrypted: bool = False,
) -> RestoreReport:
    """Check everything that can be checked, then replace the database and install the keys."""
    verify_checksum(path, progress)
    with tempfile.TemporaryDirectory(dir=_staging_parent(), prefix=".piaotong-restore-") as tmp:
        staging = Path(tmp)
        manifest = unpack_archive(path, key, staging, allow_unencrypted=allow_unencrypted)
        progress(f"Authenticated and unpacked: {_describe(manifest)}")
        check_compatible(manifest, force=force)
        check_node_empty(force=force)
        moves = plan_keys(staging, force=force)
        _check_sole_user()
        has_media = "media" in manifest
        prepared = _prepare_media(staging / MEDIA, progress) if has_media else None
        try:
            _restore_database(staging / manifest["database"]["member"], progress)
            set_aside = _install_keys(moves)
            media_aside = _install_media(prepared) if prepared else None
        finally:
            if prepared and prepared.exists():
                shutil.rmtree(prepared)
    problems = check_restored(manifest)
    migrated = _migrate_if_behind(progress)
    seq = _record_restore(path, manifest, problems)
    _mark_for_recovery(path, manifest, progress)
    names = [m.target.name for m in moves]
    count = len(media_files(manifest)) if has_media else None
    return RestoreReport(manifest, names, set_aside, count, media_aside, migrated, problems, seq)


def _staging_parent() -> Path:
    """Where the archive is unpacked: beside the SQLite file, so the final rename is atomic."""
    sqlite_path = sqlite_file()
    if connection.vendor == "sqlite" and sqlite_path is None:
        raise BackupError("cannot restore into an in-memory SQLite database")
    parent = sqlite_path.parent if sqlite_path else settings.VAR_DIR
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _describe(manifest: dict[str, Any]) -> str:
    node = manifest["node"]
    return (
        f"node {node['id']} (region {node['region']}), made {manifest['created_at']} by "
        f"Piaotong {manifest['piaotong_version']}, {len(manifest['members'])} members, "
        f"{len(media_files(manifest))} media files"
    )


def check_compatible(manifest: dict[str, Any], *, force: bool) -> None:
    vendor = manifest["database"]["vendor"]
    if vendor != connection.vendor:
        raise BackupError(
            f"the archive holds a {vendor} database but this node is configured for "
            f"{connection.vendor} (DATABASE_URL): restore it into a node of the same kind"
        )
    unknown = unknown_migrations(manifest["migrations"])
    if unknown:
        raise BackupError(
            f"the archive was made by a newer Piaotong (migrations unknown here: "
            f"{', '.join(unknown)}): upgrade this node first"
        )
    node = manifest["node"]
    here = (settings.PIAOTONG_NODE_ID, settings.PIAOTONG_REGION)
    if (node["id"], node["region"]) != here and not force:
        raise BackupError(
            f"the archive is of node {node['id']} (region {node['region']}) but this is node "
            f"{here[0]} (region {here[1]}): set PIAOTONG_NODE_ID and PIAOTONG_REGION to match, "
            "or pass --force to restore it here anyway"
        )


def check_node_empty(*, force: bool) -> None:
    held = {label: n for label, n in node_holdings().items() if n}
    if held and not force:
        listed = ", ".join(f"{n} {label}" for label, n in held.items())
        raise BackupError(
            f"this node is not empty (it holds {listed}): a restore would replace all of it. "
            "Back it up first, then pass --force to replace it"
        )


def _check_sole_user() -> None:
    """Refuse while another process has the SQLite file open: it would go on using the old file.

    In WAL mode every open connection holds a shared lock on the file, so leaving WAL mode
    succeeds only for its sole user; that also folds the WAL into the file. The last check
    before the swap, because it rewrites the file's journal-mode byte (Django's connection
    turns WAL on again).
    """
    path = sqlite_file()
    if path is None or not path.exists():
        return
    connections.close_all()
    try:
        with closing(sqlite3.connect(path.as_uri() + "?mode=rw", uri=True, timeout=5)) as db:
            mode = db.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    except sqlite3.OperationalError:
        mode = "locked"
    if mode != "delete":
        raise BackupError(f"{path} is in use: stop `piaotong serve` and every worker, then restore")


def plan_keys(staging: Path, *, force: bool) -> list[KeyMove]:
    """The keys to install; a different existing key is replaced only with --force."""
    key_dir = Path(settings.PIAOTONG_KEY_DIR)
    staged_keys = sorted((staging / KEYS).iterdir()) if (staging / KEYS).is_dir() else []
    moves = []
    for staged in staged_keys:
        target = key_dir / staged.name
        differs = target.exists() and target.read_bytes() != staged.read_bytes()
        if differs and not force:
            raise BackupError(
                f"{target} exists and differs from the archive's key: invoices signed with it "
                "would no longer verify against this node's registry. Pass --force to set it "
                "aside and install the archive's key"
            )
        if differs or not target.exists():
            moves.append(KeyMove(staged, target, differs))
    return moves


def _restore_database(staged: Path, progress: Progress) -> None:
    sqlite_path = sqlite_file()
    if sqlite_path is not None:
        progress(f"Replacing {sqlite_path}")
        _replace_sqlite(staged, sqlite_path)
    else:
        progress(f"Restoring into PostgreSQL database {connection.settings_dict['NAME']}")
        _restore_postgres(staged)


def _replace_sqlite(staged: Path, target: Path) -> None:
    # Django's connections would keep reading the old file; close them before the swap.
    connections.close_all()
    with open(staged, "rb") as file:
        os.fsync(file.fileno())
    for suffix in ("-wal", "-shm"):
        # Normally gone after _check_sole_user; SQLite must never pair an old WAL with the new
        # file.
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)
    fsync_dir(target.parent)


def _restore_postgres(staged: Path) -> None:
    pg_restore = pg_tool("pg_restore")
    args, env = pg_connection()
    # A server still connected would hold locks: fail after 30 s instead of waiting forever.
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c lock_timeout=30s".strip()
    connections.close_all()
    # One transaction: a failed restore leaves the database as it was.
    options = ["--clean", "--if-exists", "--no-owner", "--single-transaction"]
    run_tool([pg_restore, *options, *args, str(staged)], env)


def _install_keys(moves: list[KeyMove]) -> list[Path]:
    """Write the keys (mode 0600); a replaced key is renamed aside, never deleted."""
    set_aside = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for move in moves:
        move.target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if move.replaces:
            aside = move.target.with_name(f"{move.target.name}.replaced-{stamp}")
            os.replace(move.target, aside)
            set_aside.append(aside)
        temporary = move.target.with_name(f".{move.target.name}.restoring")
        temporary.unlink(missing_ok=True)
        with create_private(temporary) as out:
            out.write(move.staged.read_bytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, move.target)
        fsync_dir(move.target.parent)
    return set_aside


def _prepare_media(staged: Path, progress: Progress) -> Path:
    """The archive's media tree, moved into a new directory beside MEDIA_ROOT (same file system,
    so installing it is one rename). Files keep mode 0600, directories 0700."""
    root = Path(settings.MEDIA_ROOT).resolve()  # a symlinked MEDIA_ROOT stays a symlink
    root.parent.mkdir(parents=True, exist_ok=True)
    prepared = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}-restoring-"))
    progress(f"Preparing media files beside {root}")
    try:
        if staged.is_dir():
            prepared.rmdir()
            # A rename when staging shares the file system; otherwise a streamed copy.
            shutil.move(staged, prepared)
        for directory, _, filenames in os.walk(prepared):
            for name in filenames:
                with open(Path(directory) / name, "rb") as file:
                    os.fsync(file.fileno())
    except BaseException:
        shutil.rmtree(prepared, ignore_errors=True)
        raise
    return prepared


def _install_media(prepared: Path) -> Path | None:
    """Rename the prepared tree to MEDIA_ROOT; a non-empty MEDIA_ROOT is renamed aside first,
    never deleted. Returns where it was set aside."""
    root = Path(settings.MEDIA_ROOT).resolve()
    aside = None
    if root.is_dir() and not root.is_symlink() and not any(root.iterdir()):
        root.rmdir()
    elif root.exists() or root.is_symlink():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = root.with_name(f"{root.name}.replaced-{stamp}")
        os.replace(root, aside)
    os.replace(prepared, root)
    fsync_dir(root.parent)
    return aside


def check_restored(manifest: dict[str, Any]) -> list[str]:
    """Differences from the manifest, every broken chain (`piaotong ledger verify`) and every
    qualification document whose file is missing or differs from its row."""
    try:
        actual = live_facts()
    except BackupError as exc:  # after the restore, a finding to report rather than a refusal
        return [str(exc)]
    problems = compare_facts(DatabaseFacts.from_manifest(manifest), actual)
    for finding in verify_ledger():
        breach = finding.breach
        problems.append(
            f"chain {finding.chain} broken at row id {breach.record_id} "
            f"(position {breach.position}): {breach.reason}"
        )
    return problems + check_documents()


def check_documents() -> list[str]:
    """Every qualification document's file exists under MEDIA_ROOT with its recorded SHA-256."""
    if QualificationDocument._meta.db_table not in connection.introspection.table_names():
        return []  # an archive older than uploaded documents
    root = Path(settings.MEDIA_ROOT)
    problems = []
    for pk, name, sha256, size in QualificationDocument.objects.order_by("pk").values_list(
        "pk", "file", "sha256", "size"
    ):
        label = f"qualification document {pk} ({name})"
        try:
            path = root / media_relative(name)
        except BackupError as exc:
            problems.append(f"{label}: {exc}")
            continue
        if path.is_symlink() or not path.is_file():
            problems.append(f"{label}: file missing, the database records SHA-256 {sha256}")
            continue
        with open(path, "rb") as file:
            actual = hashlib.file_digest(file, "sha256").hexdigest()
        if actual != sha256 or path.stat().st_size != size:
            problems.append(
                f"{label}: file has SHA-256 {actual} ({path.stat().st_size} bytes), the "
                f"database records {sha256} ({size} bytes)"
            )
    return problems


def _migrate_if_behind(progress: Progress) -> list[str]:
    """Apply migrations newer than the archive, as `piaotong serve` would at start."""
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        progress(f"Applying {len(plan)} migration(s) newer than the archive")
        call_command("migrate", interactive=False, verbosity=0)
    return [f"{m.app_label}.{m.name}" for m, _ in plan]


def _mark_for_recovery(path: Path, manifest: dict[str, Any], progress: Progress) -> None:
    """A regional node of the exchange has lost what it wrote after the backup: it recovers it
    from the hub before it issues again (`exchange.recovery`); the mark is in the database."""
    created = datetime.strptime(manifest["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    needed, why = recovery_needed()
    if not needed:
        progress(f"No recovery from the hub needed: {why}")
        return
    do_mark_restored(path.name, created)
    progress(
        f"Recovery: this node lost what it wrote after {manifest['created_at']}. Issuing is "
        "paused until it has recovered its own events from the hub, which its consumer does "
        "when it starts (or run `piaotong recover`); `piaotong sync status` shows the progress"
    )


def _record_restore(path: Path, manifest: dict[str, Any], problems: list[str]) -> int:
    details = {"created_at": manifest["created_at"], "problems": len(problems)}
    with transaction.atomic():
        return record_audit(Actor(), "node.restored", path.name, details=details).seq
