"""Reconciliation (对账, anti-entropy): compare this node's invoices with a peer's and repair.

JetStream is the transport, not the system of record (ARCHITECTURE §6): a message can be lost,
a consumer can fall behind the duplicate window, a node can be restored from an old backup or a
row deleted by hand. Reconciliation makes nodes converge anyway:

1. both nodes compute digests of what they hold per (seller region, issue date) bucket, within
   the *scope* both should hold: for a regional node R, invoices R sold or R bought; the hub
   holds everything (`reconcile_digest` explains entries, buckets, cells);
2. the buckets whose digests differ are drilled down into their 100 cells, and only differing
   cells list their entries;
3. an invoice missing or older here is repaired by fetching the ledger events of its stream from
   the peer and applying them through `inbox.receive`, the consumer's own idempotent path, so
   every check (hash, chain, writer, signature) runs as for a message from NATS. Where this
   node still holds the events but lost the rows they wrote (a row deleted by hand), the events
   held are checked against the fetched ones and their apply-functions run again;
4. an invoice missing or older at the peer is pushed: its events are sent to the peer, which
   applies them through its own `inbox.receive`;
5. the cells are compared again, and the run is recorded (`ReconciliationRun`).

The peer answers over NATS request/reply (`reconcile_responder`); `Peer` is the function that
sends one request and returns the answer, so tests can answer in-process.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.db.models.functions import Substr
from django.utils import timezone

from piaotong.accounts.models import Organisation
from piaotong.exchange.actions import subject_for
from piaotong.exchange.apply import ApplyLater, applier_for, registered_kinds
from piaotong.exchange.choices import ParkReason, QuarantineReason
from piaotong.exchange.inbox import Outcome, receive
from piaotong.exchange.messages import (
    IncomingEvent,
    Poison,
    dumps,
    event_envelope,
    parse_message,
    parse_subject,
)
from piaotong.exchange.models import InboxEvent, Node, OutboxEvent, ReconciliationRun
from piaotong.exchange.nodes import NodeIdentity, node_of
from piaotong.exchange.reconcile_digest import (
    Difference,
    Entry,
    bucket_digests,
    cell_digests,
    diff_entries,
    differing,
    head_text,
)
from piaotong.exchange.writers import wrong_writer
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.ledger.chain import event_body, json_ready
from piaotong.ledger.models import LedgerEvent

log = logging.getLogger(__name__)

Peer = Callable[[dict[str, Any]], dict[str, Any]]
MAX_LISTED = 200
CHUNK = 500  # streams per IN (...) query
FULL_SCAN = 20_000  # beyond this many streams one grouped scan is cheaper than IN lists
BUCKETS_PER_REQUEST = 40
CELLS_PER_REQUEST = 200
STREAMS_PER_REQUEST = 100
DAYS_PER_REQUEST = 92
ISSUED = "InvoiceIssued"
HELD = (
    InvoiceStatus.ISSUED,
    InvoiceStatus.PARTIALLY_RED_FLUSHED,
    InvoiceStatus.FULLY_RED_FLUSHED,
    InvoiceStatus.VOIDED,
)


class PeerError(RuntimeError):
    """The peer did not answer or answered with an error."""


# --- what this node holds ------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which invoices to compare: issue dates, optionally one seller region, and the region
    whose invoices both nodes must hold (empty: everything, hub with hub)."""

    date_from: date
    date_to: date
    region: str = ""
    seller_region: str = ""
    dates: tuple[str, ...] = ()  # narrower: only these dates (drill-down requests)

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "region": self.region,
            "seller_region": self.seller_region,
            "dates": list(self.dates),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scope:
        return cls(
            date.fromisoformat(data["from"]),
            date.fromisoformat(data["to"]),
            str(data.get("region", "")),
            str(data.get("seller_region", "")),
            tuple(data.get("dates") or ()),
        )

    def narrowed(self, dates: Iterable[str]) -> Scope:
        days = sorted(set(dates))
        return Scope(
            date.fromisoformat(days[0]),
            date.fromisoformat(days[-1]),
            self.region,
            self.seller_region,
            tuple(days),
        )


def _by_streams(
    streams: list[str], query: Callable[[list[str] | None], Iterable[Any]]
) -> list[Any]:
    """Run `query` over IN lists of streams, or once over everything when there are many."""
    if len(streams) > FULL_SCAN:
        return list(query(None))
    out: list[Any] = []
    for start in range(0, len(streams), CHUNK):
        out.extend(query(streams[start : start + CHUNK]))
    return out


def stream_heads(streams: list[str]) -> dict[str, str]:
    """stream -> head text (the last seq of every writer) over the kinds nodes exchange
    (those with an apply-function): local-only events such as DocumentRendered never travel."""
    kinds = registered_kinds()

    def query(chunk: list[str] | None) -> Iterable[tuple[str, str, int]]:
        rows = LedgerEvent.objects.order_by().filter(kind__in=kinds)
        rows = (
            rows.filter(stream__in=chunk) if chunk else rows.filter(stream__startswith="invoice:")
        )
        return rows.values_list("stream", "writer").annotate(top=Max("seq"))

    tops: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for stream, writer, top in _by_streams(streams, query):
        tops[stream].append((writer, top))
    return {stream: head_text(items) for stream, items in tops.items()}


def buyer_regions(streams: list[str]) -> dict[str, str]:
    """stream -> buyer region as routed when the invoice was issued (the subject's 4th token)."""

    def inbox(chunk: list[str] | None) -> Iterable[tuple[str, str]]:
        rows = InboxEvent.objects.filter(kind=ISSUED).order_by()
        return (rows.filter(stream__in=chunk) if chunk else rows).values_list("stream", "subject")

    def outbox(chunk: list[str] | None) -> Iterable[tuple[str, str]]:
        rows = OutboxEvent.objects.filter(ledger_event__kind=ISSUED).order_by()
        if chunk:
            rows = rows.filter(ledger_event__stream__in=chunk)
        return rows.values_list("ledger_event__stream", "subject")

    out = {}
    for stream, subject in _by_streams(streams, inbox) + _by_streams(streams, outbox):
        route = parse_subject(subject)
        if route is not None:
            out[stream] = route.buyer_region
    return out


def _uid_text(value: Any) -> str:
    """The dashed form of a uid as the database returns it (hex text on SQLite)."""
    if isinstance(value, str) and len(value) == 32:
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    return str(value)


def _invoice_rows(scope: Scope) -> list[tuple[Any, ...]]:
    """(uid, number, payload hash, status, flag, issue date, buyer id) in scope, read with one
    plain query: at a million rows the ORM's per-row conversions cost more than the scan."""
    rows = (
        Invoice.objects.order_by()
        .filter(issue_date__range=(scope.date_from, scope.date_to), status__in=HELD)
        .exclude(number__isnull=True)
    )
    if scope.dates:
        rows = rows.filter(issue_date__in=scope.dates)
    if scope.seller_region:
        rows = rows.annotate(seller_region=Substr("number", 3, 2)).filter(
            seller_region=scope.seller_region
        )
    query = rows.values_list(
        "uid", "number", "payload_hash", "status", "authority_flag", "issue_date", "buyer_id"
    ).query
    sql, params = query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found: list[tuple[Any, ...]] = cursor.fetchall()
    return found


def local_entries(scope: Scope) -> list[Entry]:
    """What this node holds within `scope` (issued invoices only; drafts never travel)."""
    values = _invoice_rows(scope)
    uids = [_uid_text(row[0]) for row in values]
    streams = [f"invoice:{uid}" for uid in uids]
    heads = stream_heads(streams)
    routed: dict[str, str] = {}
    regions: dict[Any, str] = {}
    if scope.region:
        foreign = [s for s, row in zip(streams, values, strict=True) if row[1][2:4] != scope.region]
        routed = buyer_regions(foreign)
        regions = dict(Organisation.objects.values_list("pk", "region"))
    entries = []
    for uid, stream, (_, number, payload_hash, status, flag, day, buyer) in zip(
        uids, streams, values, strict=True
    ):
        seller = number[2:4]
        routed_to = routed.get(stream, regions.get(buyer, ""))
        if scope.region and seller != scope.region and routed_to != scope.region:
            continue
        day_text = day if isinstance(day, str) else day.isoformat()
        head = heads.get(stream, "")
        entries.append(Entry(seller, day_text, number, uid, payload_hash, status, flag, head))
    return entries


# --- answering a peer ----------------------------------------------------------------------


def answer(
    request: dict[str, Any],
    entries_for: Callable[[Scope], list[Entry]] | None = None,
) -> dict[str, Any]:
    """The answer to one reconciliation request of a peer (run by the responder);
    `entries_for` is `local_entries` unless a test answers from a snapshot."""
    op = request.get("op")
    if op == "events":
        return {"messages": event_messages([str(s) for s in request["streams"]])}
    if op == "apply":
        return {"outcomes": apply_messages(request["messages"])}
    if op not in {"digests", "cells", "leaves"}:
        raise ValueError(f"unknown reconciliation request {op!r}")
    scope = Scope.from_dict(request["scope"])
    entries = (entries_for or local_entries)(scope)
    if op == "digests":
        return {"buckets": bucket_digests(cell_digests(entries))}
    if op == "cells":
        return {"cells": cell_digests(entries)}
    wanted = {tuple(c) for c in request["cells"]}
    return {"entries": [e.as_list() for e in entries if (e.bucket, e.cell) in wanted]}


def in_scope(entry: Entry, scope: Scope) -> bool:
    """Whether an entry (of a node that holds `scope.region`'s invoices) is in `scope`."""
    day = entry.issue_date
    return (
        scope.date_from.isoformat() <= day <= scope.date_to.isoformat()
        and (not scope.dates or day in scope.dates)
        and (not scope.seller_region or entry.seller_region == scope.seller_region)
    )


def _subjects(events: list[LedgerEvent]) -> dict[Any, str]:
    """event id -> the subject it travelled on (outbox here, inbox from elsewhere)."""
    ids = [e.event_id for e in events]
    found = dict(
        OutboxEvent.objects.filter(ledger_event__event_id__in=ids).values_list(
            "ledger_event__event_id", "subject"
        )
    )
    found.update(InboxEvent.objects.filter(event_id__in=ids).values_list("event_id", "subject"))
    return found


def _fallback_subject(event: LedgerEvent) -> str:
    invoice = Invoice.objects.filter(uid=event.stream.partition(":")[2]).first()
    seller = invoice.number[2:4] if invoice and invoice.number else ""
    buyer = invoice.buyer.region if invoice and invoice.buyer else ""
    return subject_for(seller, buyer, event.kind)


def event_messages(streams: list[str]) -> list[list[Any]]:
    """[subject, message] of every event of these streams held here, oldest first."""
    events = list(
        LedgerEvent.objects.filter(stream__in=streams, kind__in=registered_kinds()).order_by(
            "occurred_at", "seq"
        )
    )
    subjects = _subjects(events)
    return [
        [
            subjects.get(e.event_id) or _fallback_subject(e),
            event_envelope(json_ready(event_body(e) | {"prev_hash": e.prev_hash, "hash": e.hash})),
        ]
        for e in events
    ]


# --- repairing here ------------------------------------------------------------------------


def apply_messages(messages: list[list[Any]]) -> dict[str, int]:
    """Apply [subject, message] pairs through the consumer's path; then re-run the
    apply-functions of held events whose invoice row is missing here. Outcome counts."""
    counts: dict[str, int] = defaultdict(int)
    held: dict[str, list[IncomingEvent]] = defaultdict(list)
    for subject, message in messages:
        data = dumps(message)
        outcome = receive(data, subject)
        counts[outcome.value] += 1
        if outcome == Outcome.DUPLICATE:
            parsed = parse_message(data, subject)
            if isinstance(parsed, IncomingEvent):
                held[parsed.stream].append(parsed)
    for stream, events in held.items():
        uid = stream.partition(":")[2]
        if not Invoice.objects.filter(uid=uid).exists():
            counts["reapplied" if reapply_held(events) else "reapply_failed"] += 1
    return dict(counts)


def reapply_held(events: list[IncomingEvent]) -> bool:
    """Run the apply-functions again for events this node holds in its ledger exactly as
    received (same id, position and hash), in one transaction; False if any refuses."""
    try:
        with transaction.atomic():
            for event in sorted(events, key=lambda e: (e.occurred_at, e.seq)):
                _reapply_one(event)
    except (Poison, ApplyLater) as exc:
        log.warning("reconcile: cannot re-apply %s: %s", events[0].stream, exc)
        return False
    return True


def _reapply_one(event: IncomingEvent) -> None:
    held = LedgerEvent.objects.filter(
        event_id=event.event_id, stream=event.stream, writer=event.writer, seq=event.seq
    ).values_list("hash", flat=True)
    applier = applier_for(event.kind)
    if list(held) != [event.hash] or not event.hash_matches() or applier is None:
        raise Poison(QuarantineReason.CONFLICT, "the event held here differs from the peer's")
    writer = node_of(event.writer)
    if writer is None:
        raise ApplyLater(ParkReason.AWAITING_KEY, f"{event.writer} is not in the registry")
    reason = wrong_writer(
        applier.side,
        writer.role,
        writer.region,
        seller_region=event.seller_region,
        buyer_region=event.buyer_region,
    )
    if reason:
        raise Poison(QuarantineReason.WRONG_WRITER, reason)
    event.payload = applier.upgrade(event.original_payload, event.schema_version)
    applier.apply(event)


# --- a run ---------------------------------------------------------------------------------


@dataclass
class RunReport:
    """What one run found and did (also the content of its `ReconciliationRun` row)."""

    peer: str
    scope: Scope
    invoices_here: int = 0
    buckets_compared: int = 0
    buckets_differing: int = 0
    cells_differing: int = 0
    differences: list[Difference] = field(default_factory=list)
    repaired_here: int = 0
    repaired_at_peer: int = 0
    unrepaired: int = 0
    outcomes_here: dict[str, int] = field(default_factory=dict)
    outcomes_at_peer: dict[str, int] = field(default_factory=dict)
    left: list[Difference] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for d in self.differences if d.kind == kind)


def _ask(peer: Peer, request: dict[str, Any]) -> dict[str, Any]:
    answer_ = peer(request)
    if "error" in answer_:
        raise PeerError(f"the peer refused {request.get('op')}: {answer_['error']}")
    return answer_


def _date_windows(scope: Scope) -> Iterator[Scope]:
    start = scope.date_from
    while start <= scope.date_to:
        end = min(scope.date_to, start + timedelta(days=DAYS_PER_REQUEST - 1))
        yield Scope(start, end, scope.region, scope.seller_region)
        start = end + timedelta(days=1)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def compare(peer: Peer, scope: Scope, report: RunReport) -> list[Difference]:
    """Drill down from buckets to cells to entries; the differences found."""
    mine_entries = local_entries(scope)
    report.invoices_here = len(mine_entries)
    my_cells = cell_digests(mine_entries)
    mine = bucket_digests(my_cells)
    theirs: dict[str, Any] = {}
    for window in _date_windows(scope):
        got = _ask(peer, {"op": "digests", "scope": window.as_dict()})["buckets"]
        theirs.update({k: tuple(v) for k, v in got.items()})
    buckets = differing(mine, theirs)
    report.buckets_compared = len(set(mine) | set(theirs))
    report.buckets_differing = len(buckets)
    cells: list[tuple[str, str]] = []
    for chunk in _chunks(buckets, BUCKETS_PER_REQUEST):
        narrow = scope.narrowed(b.split(":")[1] for b in chunk)
        got = _ask(peer, {"op": "cells", "scope": narrow.as_dict()})["cells"]
        for bucket in chunk:
            their_cells = {c: tuple(d) for c, d in got.get(bucket, {}).items()}
            cells += [(bucket, c) for c in differing(my_cells.get(bucket, {}), their_cells)]
    report.cells_differing = len(cells)
    return _compare_cells(peer, scope, cells, mine_entries)


def _compare_cells(
    peer: Peer, scope: Scope, cells: list[tuple[str, str]], mine: list[Entry]
) -> list[Difference]:
    wanted = set(cells)
    here = [e for e in mine if (e.bucket, e.cell) in wanted]
    there: list[Entry] = []
    for chunk in _chunks(cells, CELLS_PER_REQUEST):
        narrow = scope.narrowed(b.split(":")[1] for b, _ in chunk)
        got = _ask(peer, {"op": "leaves", "scope": narrow.as_dict(), "cells": chunk})
        there += [Entry.from_list(e) for e in got["entries"]]
    return diff_entries(here, there)


def _streams(differences: list[Difference], kinds: set[str]) -> list[str]:
    return [f"invoice:{d.uid}" for d in differences if d.kind in kinds]


def repair(peer: Peer, report: RunReport) -> None:
    """Fetch what is missing or older here; push what is missing or older at the peer."""
    fetch = _streams(report.differences, {"missing_here", "stale_here"})
    for chunk in _chunks(fetch, STREAMS_PER_REQUEST):
        messages = _ask(peer, {"op": "events", "streams": chunk})["messages"]
        _add(report.outcomes_here, apply_messages(messages))
    push = _streams(report.differences, {"missing_at_peer", "stale_at_peer"})
    for chunk in _chunks(push, STREAMS_PER_REQUEST):
        messages = event_messages(chunk)
        _add(report.outcomes_at_peer, _ask(peer, {"op": "apply", "messages": messages})["outcomes"])


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0) + int(value)


def verify_repairs(peer: Peer, scope: Scope, report: RunReport) -> None:
    """Compare the differing cells again: what still differs is left (unrepaired)."""
    if not report.differences:
        return
    cells = sorted({(f"{d.number[2:4]}:{(d.here or d.there).issue_date}", d.number[-2:])  # type: ignore[union-attr]
                    for d in report.differences})  # fmt: skip
    narrow = scope.narrowed(b.split(":")[1] for b, _ in cells)
    left = _compare_cells(peer, scope, cells, local_entries(narrow))
    left_ids = {d.uid for d in left}
    before = {d.uid: d.kind for d in report.differences}
    report.left = left
    report.unrepaired = len(left)
    here_kinds, peer_kinds = {"missing_here", "stale_here"}, {"missing_at_peer", "stale_at_peer"}
    report.repaired_here = sum(
        1 for uid, k in before.items() if k in here_kinds and uid not in left_ids
    )
    report.repaired_at_peer = sum(
        1 for uid, k in before.items() if k in peer_kinds and uid not in left_ids
    )


def run(
    peer_id: str,
    peer: Peer,
    scope: Scope,
    trigger: str = ReconciliationRun.Trigger.MANUAL,
    repair_differences: bool = True,
) -> ReconciliationRun:
    """Compare with one peer, repair, verify, and record the run (also when it failed)."""
    started, clock = timezone.now(), time.monotonic()
    report, error = RunReport(peer_id, scope), ""
    try:
        report.differences = compare(peer, scope, report)
        if repair_differences and report.differences:
            repair(peer, report)
            verify_repairs(peer, scope, report)
        else:
            report.left, report.unrepaired = report.differences, len(report.differences)
    except Exception as exc:  # recorded: a run that failed is shown, not lost
        log.exception("reconciliation with %s failed", peer_id)
        error = f"{type(exc).__name__}: {exc}"
    return do_record_reconciliation_run(report, trigger, started, time.monotonic() - clock, error)


def _outcome(report: RunReport, error: str) -> str:
    if error:
        return ReconciliationRun.Outcome.FAILED
    if not report.differences:
        return ReconciliationRun.Outcome.EQUAL
    if report.unrepaired:
        return ReconciliationRun.Outcome.UNREPAIRED
    return ReconciliationRun.Outcome.REPAIRED


def _listed(report: RunReport) -> list[dict[str, Any]]:
    left = {d.uid for d in report.left}
    return [
        {
            "number": d.number,
            "kind": d.kind,
            "repaired": d.uid not in left,
            "here": d.here.head if d.here else None,
            "there": d.there.head if d.there else None,
        }
        for d in report.differences[:MAX_LISTED]
    ]


def do_record_reconciliation_run(
    report: RunReport, trigger: str, started: datetime, seconds: float, error: str = ""
) -> ReconciliationRun:
    """Record one run (its own transaction: a run is recorded even when repairs failed)."""
    with transaction.atomic():
        return ReconciliationRun.objects.create(
            peer=report.peer,
            trigger=trigger,
            scope_region=report.scope.region,
            seller_region=report.scope.seller_region,
            date_from=report.scope.date_from,
            date_to=report.scope.date_to,
            started_at=started,
            finished_at=timezone.now(),
            duration_seconds=round(seconds, 3),
            invoices_here=report.invoices_here,
            buckets_compared=report.buckets_compared,
            buckets_differing=report.buckets_differing,
            cells_differing=report.cells_differing,
            missing_here=report.count("missing_here"),
            missing_at_peer=report.count("missing_at_peer"),
            stale_here=report.count("stale_here"),
            stale_at_peer=report.count("stale_at_peer"),
            repaired_here=report.repaired_here,
            repaired_at_peer=report.repaired_at_peer,
            unrepaired=report.unrepaired,
            outcome=_outcome(report, error),
            error=error,
            differences=_listed(report),
        )


# --- who compares with whom ----------------------------------------------------------------


def peers_of(me: NodeIdentity) -> list[tuple[str, str]]:
    """(peer node id, scope region): a regional node compares its region with the hub; the
    hub compares each regional node's region with that node."""
    nodes = Node.objects.exclude(node_id=me.node_id)
    if me.is_hub:
        return [(n.node_id, n.region) for n in nodes if not n.is_hub]
    return [(n.node_id, me.region) for n in nodes if n.is_hub]


def recent_scope(days: int, region: str, today: date | None = None) -> Scope:
    today = today or timezone.localdate()
    return Scope(today - timedelta(days=max(days, 1) - 1), today, region)
