"""The hub's side of recovery after a restore (追回来源): what a restored node asks for.

A restored regional node (`recovery.py`) asks the hub over core NATS request/reply, subject
`piaotong.recover.<hub node id>`, JSON both ways. Every request names the asking node
(`writer`), its `region` and `since` (ISO time); paged requests carry `after` (a cursor, 0 at
first) and `limit`, and their answers `events` (a list of [subject, message, stream sequence,
received at]) and `next` (the cursor of the next page, or null after the last):

- `status` with `stream_seq`: has the hub's durable consumer acknowledged the stream up to
  that message? `{"caught_up", "applied_through", "pending"}`;
- `own`: the events written by `writer` that the hub applied since `since` (inbox order);
- `parked`: the events written by `writer` parked at the hub (not paged: they are few);
- `foreign`: events of other writers, applied at the hub since `since`, whose subject routes
  them to `region` (as seller or buyer region);
- `authority`: the hub's own events since `since` routed to `region`.

The messages are the ledger events as the hub holds them, rebuilt exactly as reconciliation
sends them (the writer's hash covers them), so the asking node checks every one itself. Errors
are answered as `{"error": ...}`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from piaotong.exchange.messages import event_envelope, parse_subject
from piaotong.exchange.models import InboxEvent, OutboxEvent, ParkedEvent
from piaotong.exchange.nodes import this_node
from piaotong.ledger.chain import event_body, json_ready
from piaotong.ledger.models import LedgerEvent

MAX_LIMIT = 1000
# (acknowledged through this stream sequence, messages pending) of the hub's durable consumer
Position = Callable[[], tuple[int, int]]


def message_of(event: LedgerEvent) -> dict[str, Any]:
    return event_envelope(
        json_ready(event_body(event) | {"prev_hash": event.prev_hash, "hash": event.hash})
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def routes_to(subject: str, region: str) -> bool:
    """
    >>> routes_to("piaotong.v1.31.11.InvoiceBooked", "11"), routes_to("piaotong.v1.31.44.X", "11")
    (True, False)
    """
    route = parse_subject(subject)
    return route is not None and region in (route.seller_region, route.buyer_region)


def answer(request: dict[str, Any], position: Position | None = None) -> dict[str, Any]:
    """The answer to one recovery request (run by the hub's responder)."""
    if not this_node().is_hub:
        return {"error": f"{this_node().node_id} is not the hub: ask the hub"}
    op = request.get("op")
    if op == "status":
        if position is None:
            return {"error": "this process cannot read the hub's consumer"}
        through, pending = position()
        wanted = int(request.get("stream_seq") or 0)
        return {"caught_up": through >= wanted, "applied_through": through, "pending": pending}
    writer, region = str(request["writer"]), str(request["region"])
    since = datetime.fromisoformat(str(request["since"]))
    if op == "parked":
        parked = ParkedEvent.objects.filter(writer=writer).order_by("pk")
        return {"events": [[p.subject, p.message, p.stream_seq, _iso(p.parked_at)] for p in parked]}
    after, limit = int(request.get("after") or 0), min(int(request.get("limit") or 500), MAX_LIMIT)
    if op == "own":
        rows = InboxEvent.objects.filter(writer=writer, applied_at__gte=since)
        return _inbox_page(rows, after, limit, region="")
    if op == "foreign":
        rows = InboxEvent.objects.filter(applied_at__gte=since).exclude(writer=writer)
        return _inbox_page(rows, after, limit, region)
    if op == "authority":
        return _authority_page(since, after, limit, region)
    raise ValueError(f"unknown recovery request {op!r}")


def _inbox_page(rows: QuerySet[InboxEvent], after: int, limit: int, region: str) -> dict[str, Any]:
    """A page of inbox rows (after the cursor, in id order) with their ledger events; with
    `region`, only those routed there (the page's cursor still moves past every row read)."""
    page = list(
        rows.filter(pk__gt=after)
        .order_by("pk")
        .values_list("pk", "event_id", "subject", "stream_seq", "received_at")[:limit]
    )
    wanted = [r for r in page if not region or routes_to(r[2], region)]
    events = {
        e.event_id: e for e in LedgerEvent.objects.filter(event_id__in=[r[1] for r in wanted])
    }
    return {
        "events": [
            [subject, message_of(events[event_id]), stream_seq, _iso(received)]
            for _pk, event_id, subject, stream_seq, received in wanted
            if event_id in events
        ],
        "next": page[-1][0] if len(page) == limit else None,
    }


def _authority_page(since: datetime, after: int, limit: int, region: str) -> dict[str, Any]:
    me = this_node().node_id
    page = list(
        OutboxEvent.objects.filter(pk__gt=after, created_at__gte=since, ledger_event__writer=me)
        .select_related("ledger_event")
        .order_by("pk")[:limit]
    )
    return {
        "events": [
            [row.subject, message_of(row.ledger_event), row.stream_seq, _iso(row.published_at)]
            for row in page
            if routes_to(row.subject, region)
        ],
        "next": page[-1].pk if len(page) == limit else None,
    }
