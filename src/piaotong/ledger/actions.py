"""Appending to the ledger and the audit chain.

These run inside the caller's transaction (every domain action appends its event and audit row
in the same transaction as its rows), so they refuse to run outside one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from piaotong.accounts.access import Actor
from piaotong.fastsql import Rows, build, execute, insert_many
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
# One statement reserves positions and creates the head on first use; it keeps the row locked
# until commit, which serialises appends to the chain.
_RESERVE = (
    f"INSERT INTO {_TABLE} (name, seq, hash) VALUES (%s, %s, '') "  # noqa: S608 - our table
    f"ON CONFLICT (name) DO UPDATE SET seq = {_TABLE}.seq + excluded.seq RETURNING seq, hash"
)
_SET_HASH = f"UPDATE {_TABLE} SET hash = %s WHERE name = %s"  # noqa: S608


def reserve_chain(name: str, count: int) -> Rows:
    """Reserve `count` positions after the chain's tip; the row stays locked until commit.

    Read it with `chain_position`; under `fastsql.pipeline()` the answer comes later.
    """
    return Rows(_RESERVE, [name, count])


def chain_position(reserved: Rows, count: int) -> tuple[int, str]:
    """(the seq before the reservation, the tip's hash) of a `reserve_chain` answer."""
    row = reserved.first()
    assert row is not None
    return int(row[0]) - count, str(row[1])


def _set_head_hash(name: str, hash_: str) -> None:
    execute(_SET_HASH, [hash_, name])


def record_audit(
    actor: Actor,
    action: str,
    target: str,
    organisation_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one audit entry to the node-wide chain, serialised by the chain head's row lock."""
    return record_audits(actor, [(action, target, organisation_id, details or {})])[0]


@dataclass(frozen=True)
class ReadyPayload:
    """An event payload given as its JSON column returns it (`json_ready`), with the same
    payload for hashing in which large parts are `orjson.Fragment`s of their canonical JSON.

    Issuing has the canonical bytes of the invoice already (they are what is signed), so the
    event's hash does not serialise the invoice a second time. Both forms must have the same
    canonical JSON; `piaotong ledger verify`, which hashes `stored`, proves it for every row.
    """

    stored: dict[str, Any]
    hashed: dict[str, Any]


def append_first_events(
    items: Sequence[tuple[str, str, dict[str, Any] | ReadyPayload]],
    ids: Sequence[int] | None = None,
) -> list[LedgerEvent]:
    """Append the first event of each of many new streams at once (bulk issuing).

    The streams are new in this transaction (fresh invoice uids), so each event is seq 1 with an
    empty previous hash and nothing needs locking. `ids` are primary keys reserved beforehand
    (`fastsql.reserve_ids`), for outbox rows sent in the same pipeline.
    """
    _require_transaction()
    writer, now = settings.PIAOTONG_NODE_ID, timezone.now()
    events = []
    for stream, kind, payload in items:
        if isinstance(payload, ReadyPayload):
            stored, hashed = payload.stored, payload.hashed
        else:
            stored = hashed = json_ready(payload)
        event = build(
            LedgerEvent,
            {
                "stream": stream,
                "writer": writer,
                "seq": 1,
                "kind": kind,
                "payload": stored,
                "prev_hash": "",
                "occurred_at": now,
            },
        )
        event.hash = chain_hash("", event_body(event) | {"payload": hashed})
        events.append(event)
    if ids is not None:
        for event, pk in zip(events, ids, strict=True):
            event.pk = pk
    insert_many(events)
    return events


def record_audits(
    actor: Actor,
    items: Sequence[tuple[str, str, int | None, dict[str, Any]]],
    reserved: Rows | None = None,
) -> list[AuditEntry]:
    """Append many audit entries (action, target, organisation id, details) under one lock.

    `reserved` is the answer of `reserve_chain(AUDIT_CHAIN, len(items))` sent earlier by a
    caller that takes the chain's lock at a point of its own lock order.
    """
    _require_transaction()
    if reserved is None:
        reserved = reserve_chain(AUDIT_CHAIN, len(items))
    first_seq, prev = chain_position(reserved, len(items))
    now, entries = timezone.now(), []
    principal, label = actor.principal, actor.label
    for offset, (action, target, organisation_id, details) in enumerate(items, start=1):
        entry = build(
            AuditEntry,
            {
                "seq": first_seq + offset,
                "actor": principal,
                "actor_label": label,
                "organisation_id": organisation_id,
                "action": action,
                "target": target,
                "details": json_ready(details),
                "prev_hash": prev,
                "occurred_at": now,
            },
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
