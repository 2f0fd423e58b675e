"""Appending to the ledger and the audit chain.

These run inside the caller's transaction (every domain action appends its event and audit row
in the same transaction as its rows), so they refuse to run outside one.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from piaotong.accounts.access import Actor
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


def _lock_head(name: str) -> ChainHead:
    head = ChainHead.objects.select_for_update().filter(name=name).first()
    if head is None:
        ChainHead.objects.bulk_create([ChainHead(name=name)], ignore_conflicts=True)
        head = ChainHead.objects.select_for_update().get(name=name)
    return head


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
            stream=stream, writer=writer, seq=1, kind=kind, payload=json_ready(payload),
            prev_hash="", occurred_at=now,
        )
        event.hash = chain_hash("", event_body(event))
        events.append(event)
    return LedgerEvent.objects.bulk_create(events)


def record_audits(
    actor: Actor, items: list[tuple[str, str, int | None, dict[str, Any]]]
) -> list[AuditEntry]:
    """Append many audit entries (action, target, organisation id, details) under one lock."""
    _require_transaction()
    head = _lock_head(AUDIT_CHAIN)
    now, prev, entries = timezone.now(), head.hash, []
    for offset, (action, target, organisation_id, details) in enumerate(items, start=1):
        entry = AuditEntry(
            seq=head.seq + offset, actor=actor.principal, actor_label=actor.label,
            organisation_id=organisation_id, action=action, target=target,
            details=json_ready(details), prev_hash=prev, occurred_at=now,
        )
        entry.hash = prev = chain_hash(prev, audit_body(entry))
        entries.append(entry)
    AuditEntry.objects.bulk_create(entries)
    head.seq, head.hash = entries[-1].seq, entries[-1].hash
    head.save(update_fields=["seq", "hash"])
    return entries
