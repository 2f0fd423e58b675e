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
    file_digest,
)
from piaotong.backup.facts import DatabaseFacts
from piaotong.backup.reporting import BackupError
from piaotong.ledger.models import AuditEntry, LedgerEvent


def build_manifest(
    vendor: str, facts: DatabaseFacts, members: dict[str, Path], created_at: datetime
) -> dict[str, Any]:
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
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"manifest format version {manifest.get('format_version')} is unknown")
    missing = sorted(_MANIFEST_KEYS - manifest.keys())
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


def check_members(manifest: dict[str, Any], digests: dict[str, Any]) -> None:
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
