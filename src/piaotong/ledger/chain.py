"""Pure chain arithmetic shared by appends and verification."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from piaotong.lib.canonical import canonical_json, chain_hash


def event_body(event: Any) -> dict[str, Any]:
    """The fields of a ledger event that its hash covers."""
    return {
        "event_id": str(event.event_id),
        "stream": event.stream,
        "writer": event.writer,
        "seq": event.seq,
        "kind": event.kind,
        "schema_version": event.schema_version,
        "payload": event.payload,
        "occurred_at": event.occurred_at,
    }


def audit_body(entry: Any) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "actor": entry.actor,
        "actor_label": entry.actor_label,
        "organisation_id": entry.organisation_id,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "occurred_at": entry.occurred_at,
    }


@dataclass(frozen=True)
class ChainBreak:
    """The first record whose stored hash or link does not match what its content implies."""

    position: int
    record_id: int
    reason: str


def verify_records(
    records: Iterable[Any], body: Any, expected_first_prev: str = ""
) -> ChainBreak | None:
    """Recompute a chain and name the first altered record, or None if it is intact."""
    prev = expected_first_prev
    for position, record in enumerate(records):
        if record.prev_hash != prev:
            return ChainBreak(position, record.pk, "prev_hash does not link to the previous record")
        if chain_hash(prev, body(record)) != record.hash:
            return ChainBreak(position, record.pk, "content does not match its hash")
        prev = record.hash
    return None


def json_ready(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A payload as the JSON column will return it, so hashing before and after save agrees."""
    return dict(orjson.loads(canonical_json(payload)))
