"""Appending to the ledger and the audit chain.

These run inside the caller's transaction (every domain action appends its event and audit row
in the same transaction as its rows), so they refuse to run outside one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from piaotong.accounts.access import Actor
from piaotong.fastsql import execute_returning, insert_many
from piaotong.ledger.chain import audit_body, event_body, json_ready
from piaotong.ledger.models import AuditEntry, ChainHead, LedgerEvent
from piaotong.lib.canonical import chain_hash

AUDIT_CHAIN = "audit"


def _require_transaction() -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger appends must run inside the domain action's transaction")


def append_event(stream: str, kind: str, payload: dict[str, Any]) -> LedgerEvent:
    """Append one event to `stream` as this node.

    The caller holds a row lock on the stream's subject (the invoice), so reading the last event
    and inserting the next cannot race.
    """
    _require_transaction()
    writer = settings.PIAOTONG_NODE_ID
    last = (
        LedgerEvent.objects.filter(stream=stream, writer=writer)
        .order_by("-seq")
        .values_list("seq", "hash")
        .first()
    )
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, "")
    event = LedgerEvent(
        stream=stream,
        writer=writer,
        seq=seq,
        kind=kind,
        payload=json_ready(payload),
        prev_hash=prev_hash,
        occurred_at=timezone.now(),
    )
    event.hash = chain_hash(prev_hash, event_body(event))
    event.save()
    return event


_TABLE = ChainHead._meta.db_table
_RESERVE = f"UPDATE {_TABLE} SET seq = seq + %s WHERE name = %s RETURNING seq, hash"  # noqa: S608
_SET_HASH = f"UPDATE {_TABLE} SET hash = %s WHERE name = %s RETURNING seq"  # noqa: S608


def _reserve(name: str, count: int) -> tuple[int, str]:
    """Reserve `count` positions after the chain's tip; the row stays locked until commit.

    Returns (the seq before the reservation, the tip's hash).
    """
    row = execute_returning(_RESERVE, [count, name])
    if row is None:
        ChainHead.objects.bulk_create([ChainHead(name=name)], ignore_conflicts=True)
        row = execute_returning(_RESERVE, [count, name])
        assert row is not None
    return int(row[0]) - count, str(row[1])


def _set_head_hash(name: str, hash_: str) -> None:
    execute_returning(_SET_HASH, [hash_, name])


def record_audit(
    actor: Actor,
    action: str,
    target: str,
    organisation_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry to the node-wide chain, serialised by the chain head's row lock."""
    return record_audits(actor, [(action, target, organisation_id, details or {})])[0]


def append_first_events(items: list[tuple[str, str, dict[str, Any]]]) -> list[LedgerEvent]:
    """Append the first event of each of many new streams at once (bulk issuing).

    The streams are new in this transaction (fresh invoice uids), so each event is seq 1 with an
    empty previous hash and nothing needs locking.
    """
    _require_transaction()
    writer, now = settings.PIAOTONG_NODE_ID, timezone.now()
    events = []
    for stream, kind, payload in items:
        event = LedgerEvent(
            stream=stream,
            writer=writer,
            seq=1,
            kind=kind,
            payload=json_ready(payload),
            prev_hash="",
            occurred_at=now,
        )
        event.hash = chain_hash("", event_body(event))
        events.append(event)
    insert_many(events)
    return events


def record_audits(
    actor: Actor, items: Sequence[tuple[str, str, int | None, dict[str, Any]]]
) -> list[AuditEntry]:
    """Append many audit entries (action, target, organisation id, details) under one lock."""
    _require_transaction()
    first_seq, prev = _reserve(AUDIT_CHAIN, len(items))
    now, entries = timezone.now(), []
    for offset, (action, target, organisation_id, details) in enumerate(items, start=1):
        entry = AuditEntry(
            seq=first_seq + offset,
            actor=actor.principal,
            actor_label=actor.label,
            organisation_id=organisation_id,
            action=action,
            target=target,
            details=json_ready(details),
            prev_hash=prev,
            occurred_at=now,
        )
        entry.hash = prev = chain_hash(prev, audit_body(entry))
        entries.append(entry)
    insert_many(entries)
    _set_head_hash(AUDIT_CHAIN, entries[-1].hash)
    return entries


def do_record_audit_export(
    actor: Actor, organisation_ids: Sequence[int], filters: dict[str, Any]
) -> None:
    """An export of the audit log is itself audited, once per organisation it covers."""
    with transaction.atomic():
        record_audits(
            actor, [("audit_log.exported", "audit_log", org, filters) for org in organisation_ids]
        )
