"""The manifest (清单): `manifest.json`, the archive's first member, written and read back.

It says what the archive holds (each member's size and SHA-256) and the database facts a
restore is checked against.
"""

from __future__ import annotations

import json
import tarfile
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from piaotong.backup.archive import (
    DATABASE_MEMBERS,
    FORMAT_VERSION,
    MANIFEST,
    MAX_CHUNK_SIZE,
    MEDIA,
    READABLE_VERSIONS,
    file_digest,
)
from piaotong.backup.facts import DatabaseFacts
from piaotong.backup.reporting import BackupError
from piaotong.ledger.models import AuditEntry, LedgerEvent


def build_manifest(
    vendor: str,
    facts: DatabaseFacts,
    members: dict[str, Path],
    media: dict[str, dict[str, Any]],
    created_at: datetime,
) -> dict[str, Any]:
    """`media`: each file under MEDIA_ROOT, by relative path, with its size and SHA-256."""
    return {
        "format": "piaotong-backup",
        "format_version": FORMAT_VERSION,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "piaotong_version": version("piaotong"),
        "node": {
            "id": settings.PIAOTONG_NODE_ID,
            "region": settings.PIAOTONG_REGION,
            "channel": settings.PIAOTONG_CHANNEL,
        },
        "database": {"vendor": vendor, "member": DATABASE_MEMBERS[vendor]},
        "migrations": facts.migrations,
        "row_counts": facts.row_counts,
        "ledger": {
            "events": facts.count(LedgerEvent),
            "audit_entries": facts.count(AuditEntry),
            "chain_heads": facts.chain_heads,
        },
        "members": {name: file_digest(path) for name, path in members.items()},
        "media": {"count": len(media), "files": media},
    }


def read_manifest(member: tarfile.TarInfo, data: IO[bytes]) -> dict[str, Any]:
    if member.name != MANIFEST or member.size > MAX_CHUNK_SIZE:
        raise BackupError(f"the archive starts with {member.name!r}, not its manifest")
    try:
        manifest = json.loads(data.read())
    except ValueError:
        raise BackupError("the archive's manifest is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "piaotong-backup":
        raise BackupError("the archive's manifest is not a Piaotong backup manifest")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise BackupError(f"manifest format version {version} is unknown")
    missing = sorted(_MANIFEST_KEYS - manifest.keys())
    if version >= 2:
        missing += _media_problems(manifest.get("media"))
    if missing:
        raise BackupError(f"the archive's manifest lacks {', '.join(missing)}")
    return manifest


_MANIFEST_KEYS = {
    "created_at",
    "piaotong_version",
    "node",
    "database",
    "migrations",
    "row_counts",
    "ledger",
    "members",
}


def _media_problems(media: Any) -> list[str]:
    if not isinstance(media, dict) or not isinstance(media.get("files"), dict):
        return ["media"]
    if media.get("count") != len(media["files"]):
        return ["a media count matching its file list"]
    return []


def media_files(manifest: dict[str, Any]) -> dict[str, Any]:
    """The media files a manifest lists, by path relative to MEDIA_ROOT (none in version 1)."""
    return dict(manifest.get("media", {}).get("files", {}))


def check_members(manifest: dict[str, Any], digests: dict[str, Any]) -> None:
    prefix = f"{MEDIA}/"
    media = {n.removeprefix(prefix): d for n, d in digests.items() if n.startswith(prefix)}
    digests = {n: d for n, d in digests.items() if not n.startswith(prefix)}
    listed_media = media_files(manifest)
    if set(listed_media) != set(media):
        extra = sorted(set(media) - set(listed_media))
        lacking = sorted(set(listed_media) - set(media))
        raise BackupError(
            f"the archive's media files differ from its manifest (not listed: {extra}, "
            f"missing: {lacking})"
        )
    for name, digest in media.items():
        if listed_media[name] != digest:
            raise BackupError(f"media file {name} does not match the SHA-256 in the manifest")
    listed = manifest["members"]
    if set(listed) != set(digests):
        raise BackupError(
            f"the archive holds {sorted(digests)} but its manifest lists {sorted(listed)}"
        )
    for name, digest in digests.items():
        if listed[name] != digest:
            raise BackupError(f"member {name} does not match the SHA-256 in the manifest")
    if manifest["database"]["member"] not in digests:
        raise BackupError("the archive holds no database")
