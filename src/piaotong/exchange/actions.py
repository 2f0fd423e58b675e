"""Queueing ledger events for other nodes (the write side of the outbox).

`enqueue_events` runs in the issuing transaction. It wakes the relay when that transaction
commits: on PostgreSQL with `NOTIFY piaotong_outbox` (delivered by the server only at commit),
in the same process through `OUTBOX_SIGNAL`; the relay also polls at least every second.
"""

from __future__ import annotations

import threading

from django.db import connection, transaction

from piaotong.exchange.messages import event_envelope
from piaotong.exchange.models import OutboxEvent
from piaotong.fastsql import insert_many
from piaotong.ledger.chain import event_body, json_ready
from piaotong.ledger.models import LedgerEvent

SUBJECT_PREFIX = "piaotong.v1"
NOTIFY_CHANNEL = "piaotong_outbox"
OUTBOX_SIGNAL = threading.Event()


def subject_for(seller_region: str, buyer_region: str, kind: str) -> str:
    """`piaotong.v1.<seller_region>.<buyer_region>.<event>`; buyer region `xx` if unknown.

    >>> subject_for("11", "31", "InvoiceIssued")
    'piaotong.v1.11.31.InvoiceIssued'
    """
    return f"{SUBJECT_PREFIX}.{seller_region}.{buyer_region or 'xx'}.{kind}"


def enqueue_events(items: list[tuple[LedgerEvent, str, str]]) -> list[OutboxEvent]:
    """Queue ledger events (event, seller region, buyer region); runs in the caller's transaction.

    Refused while this node recovers after a restore (`recovery.require_writing_allowed`).
    """
    from piaotong.exchange.recovery import require_writing_allowed  # recovery imports this

    require_writing_allowed()
    rows = [
        OutboxEvent(
            ledger_event=event,
            subject=subject_for(seller_region, buyer_region, event.kind),
            schema=f"piaotong.{event.kind}",
            schema_version=event.schema_version,
        )
        for event, seller_region, buyer_region in items
    ]
    insert_many(rows)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    transaction.on_commit(OUTBOX_SIGNAL.set)
    return rows


def message_for(outbox: OutboxEvent) -> dict[str, object]:
    """The message published for an outbox row: the event with its chain hashes, in the
    current envelope (exchange.messages)."""
    event = outbox.ledger_event
    return event_envelope(
        json_ready(event_body(event) | {"prev_hash": event.prev_hash, "hash": event.hash})
    )
