"""Queueing ledger events for other nodes."""

from __future__ import annotations

from piaotong.exchange.models import OutboxEvent
from piaotong.fastsql import insert_many
from piaotong.ledger.chain import event_body, json_ready
from piaotong.ledger.models import LedgerEvent

SUBJECT_PREFIX = "piaotong.v1"


def subject_for(seller_region: str, buyer_region: str, kind: str) -> str:
    """`piaotong.v1.<seller_region>.<buyer_region>.<event>`; buyer region `xx` if unknown.

    >>> subject_for("11", "31", "InvoiceIssued")
    'piaotong.v1.11.31.InvoiceIssued'
    """
    return f"{SUBJECT_PREFIX}.{seller_region}.{buyer_region or 'xx'}.{kind}"


def enqueue_events(items: list[tuple[LedgerEvent, str, str]]) -> list[OutboxEvent]:
    """Queue ledger events (event, seller region, buyer region); runs in the caller's transaction."""
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
    return rows


def message_for(outbox: OutboxEvent) -> dict[str, object]:
    """The message body published for an outbox row: the event with its chain hashes."""
    event = outbox.ledger_event
    return json_ready(event_body(event) | {"prev_hash": event.prev_hash, "hash": event.hash})
