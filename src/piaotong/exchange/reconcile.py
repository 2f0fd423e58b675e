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

Cost, at a million invoices: each side reads its invoices once per run, in one query that joins
each invoice to its ledger stream's (stream, writer, seq) index and streams the rows in issue
date order, so one date's entries are in memory at a time (`local_cells`); the two nodes do this
at the same time (the peer is asked first). Every later step reads only the dates that differ.

The peer answers over NATS request/reply (`reconcile_responder`); `Peer` is the function that
sends one request and returns the answer, so tests can answer in-process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from piaotong.accounts.models import Organisation
from piaotong.exchange.actions import subject_for
from piaotong.exchange.apply import ApplyLater, applier_for, registered_kinds
from piaotong.exchange.choices import QuarantineReason
from piaotong.exchange.inbox import Outcome, check_writer_and_hash, receive_batch
from piaotong.exchange.messages import (
    IncomingEvent,
    Poison,
    dumps,
    event_envelope,
    parse_message,
    parse_subject,
)
from piaotong.exchange.models import InboxEvent, Node, OutboxEvent, ReconciliationRun
from piaotong.exchange.nodes import NodeIdentity
from piaotong.exchange.reconcile_digest import (
    Difference,
    Digest,
    Entry,
    bucket_digests,
    cell_digests,
    diff_entries,
    differing,
    digests_by_date,
    head_text,
    leaf_text,
)
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.ledger.chain import event_body, json_ready
from piaotong.ledger.models import LedgerEvent

log = logging.getLogger(__name__)

Peer = Callable[[dict[str, Any]], dict[str, Any]]
MAX_LISTED = 200
CHUNK = 500  # streams per IN (...) query
FETCH = 2000  # rows per fetch of a streamed query
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


def _in_chunks(streams: list[str], query: Callable[[list[str]], Iterable[Any]]) -> Iterator[Any]:
    """Run `query` over IN lists of at most CHUNK streams."""
    for start in range(0, len(streams), CHUNK):
        yield from query(streams[start : start + CHUNK])


def buyer_regions(streams: list[str]) -> dict[str, str]:
    """stream -> buyer region as routed when the invoice was issued (the subject's 4th token)."""

    def inbox(chunk: list[str]) -> Iterable[tuple[str, str]]:
        rows = InboxEvent.objects.filter(kind=ISSUED, stream__in=chunk).order_by()
        return rows.values_list("stream", "subject")

    def outbox(chunk: list[str]) -> Iterable[tuple[str, str]]:
        rows = OutboxEvent.objects.filter(ledger_event__kind=ISSUED).order_by()
        rows = rows.filter(ledger_event__stream__in=chunk)
        return rows.values_list("ledger_event__stream", "subject")

    out = {}
    for query in (inbox, outbox):
        for stream, subject in _in_chunks(streams, query):
            route = parse_subject(subject)
            if route is not None:
                out[stream] = route.buyer_region
    return out


def _sql_texts() -> tuple[str, str]:
    """SQL for the ledger stream `invoice:<uid>` of the invoice row `i` (as `Invoice.stream`:
    a native uuid on PostgreSQL, 32 hex digits on SQLite), and for its issue date as
    YYYY-MM-DD text (no per-row date conversion on a million rows)."""
    if connection.vendor == "postgresql":
        return "'invoice:' || i.uid::text", "to_char(i.issue_date, 'YYYY-MM-DD')"
    parts = " || '-' || ".join(
        f"substr(i.uid, {a}, {n})" for a, n in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    )
    return f"'invoice:' || {parts}", "CAST(i.issue_date AS TEXT)"


def _held_query(scope: Scope) -> tuple[str, list[Any]]:
    """One row per (invoice in scope, event of its stream): the invoice's columns and the
    event's writer and seq, ordered by issue date, an invoice's rows together. The join reads
    the (stream, writer, seq) index only: an invoice stream holds exchanged events only
    (`LedgerEvent`), so no ledger row needs to be read to tell its kind. Not grouped in SQL:
    the head is taken in Python from rows that come together anyway (2 s less at a million)."""
    stream, day = _sql_texts()
    where = ["i.issue_date BETWEEN %s AND %s", "i.number IS NOT NULL"]
    params: list[Any] = [scope.date_from, scope.date_to]
    where.append(f"i.status IN ({', '.join(['%s'] * len(HELD))})")
    params += [str(s) for s in HELD]
    if scope.dates:
        where.append(f"i.issue_date IN ({', '.join(['%s'] * len(scope.dates))})")
        params += [date.fromisoformat(d) for d in scope.dates]
    if scope.seller_region:
        where.append("substr(i.number, 3, 2) = %s")
        params.append(scope.seller_region)
    sql = (
        f"SELECT {stream}, i.number, i.payload_hash, i.status, i.authority_flag, {day}, "  # noqa: S608
        "i.buyer_id, l.writer, l.seq "
        f"FROM {Invoice._meta.db_table} i LEFT JOIN {LedgerEvent._meta.db_table} l "
        f"ON l.stream = {stream} WHERE {' AND '.join(where)} "
        "ORDER BY i.issue_date, i.id"
    )
    return sql, params


# stream, number, payload hash, status, authority flag, issue date, buyer id, stream head
Held = tuple[str, str, str, str, str, str, Any, str]


def _held(scope: Scope) -> Iterator[Held]:
    """The invoices this node holds within `scope`, one tuple each with its stream head,
    ordered by issue date; streamed from the database in chunks (a server-side cursor on
    PostgreSQL), never all in memory."""
    sql, params = _held_query(scope)
    chunked = not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
    current: tuple[str, str, str, str, str, str, Any] | None = None
    tops: dict[str, int] = {}
    with connection.chunked_cursor() if chunked else connection.cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH):
            for stream, number, digest, status, flag, day, buyer, writer, seq in rows:
                if current is None or stream != current[0]:
                    if current is not None:
                        yield (*current, _head(tops))
                    current, tops = (stream, number, digest, status, flag, day, buyer), {}
                if writer is not None and seq > tops.get(writer, 0):
                    tops[writer] = seq
    if current is not None:
        yield (*current, _head(tops))


def _head(tops: dict[str, int]) -> str:
    if len(tops) == 1:  # most streams: one writer (the seller's node)
        for writer, seq in tops.items():
            return f"{writer}:{seq}"
    return head_text(tops.items())


def _in_region(scope: Scope) -> Iterator[Held]:
    """`_held`, less what a regional scope leaves out: an invoice of another seller region
    counts only when its buyer is in the scope's region (as routed at issue)."""
    region = scope.region
    regions: dict[Any, str] = {}
    for chunk in _batched(_held(scope), FETCH):
        foreign = [h[0] for h in chunk if region and h[1][2:4] != region]
        if not foreign:
            yield from chunk
            continue
        routed = buyer_regions(foreign)
        regions = regions or dict(Organisation.objects.values_list("pk", "region"))
        for held in chunk:
            stream, number, buyer = held[0], held[1], held[6]
            if number[2:4] != region:
                routed_to = routed[stream] if stream in routed else regions.get(buyer, "")
                if routed_to != region:
                    continue
            yield held


def iter_entries(scope: Scope) -> Iterator[Entry]:
    """What this node holds within `scope` (issued invoices only; drafts never travel), ordered
    by issue date, streamed."""
    for stream, number, digest, status, flag, day, _, head in _in_region(scope):
        yield Entry(number[2:4], day, number, stream[8:], digest, status, flag, head)


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def local_entries(scope: Scope) -> list[Entry]:
    """`iter_entries` as a list: for narrow scopes (a few dates of a drill-down)."""
    return list(iter_entries(scope))


def local_cells(scope: Scope) -> dict[str, dict[str, Digest]]:
    """bucket -> cell -> digest of what this node holds within `scope`, streamed: one issue
    date's entries in memory at a time (`cell_digests(iter_entries(scope))`, made from the
    rows directly: no entry objects for a million invoices)."""
    return digests_by_date(
        (number[2:4], day, number, stream[8:], leaf_text(number, digest, status, flag, head))
        for stream, number, digest, status, flag, day, _, head in _in_region(scope)
    )


# --- answering a peer ----------------------------------------------------------------------


def answer(
    request: dict[str, Any],
    entries_for: Callable[[Scope], Iterable[Entry]] | None = None,
) -> dict[str, Any]:
    """The answer to one reconciliation request of a peer (run by the responder); each is
    computed over the request's scope only, streamed (`iter_entries`), unless a test answers
    from a snapshot (`entries_for`)."""
    op = request.get("op")
    if op == "events":
        return {"messages": event_messages([str(s) for s in request["streams"]])}
    if op == "apply":
        return {"outcomes": apply_messages(request["messages"])}
    if op not in {"digests", "cells", "leaves"}:
        raise ValueError(f"unknown reconciliation request {op!r}")
    scope = Scope.from_dict(request["scope"])
    if op == "leaves":
        wanted = {tuple(c) for c in request["cells"]}
        entries = (entries_for or iter_entries)(scope)
        return {"entries": [e.as_list() for e in entries if (e.bucket, e.cell) in wanted]}
    cells = cell_digests(entries_for(scope)) if entries_for else local_cells(scope)
    if op == "digests":
        return {"buckets": bucket_digests(cells)}
    return {"cells": cells}


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
    """Apply [subject, message] pairs through the consumer's path (`inbox.receive_batch`: one
    transaction, a savepoint per event); then re-run the apply-functions of held events whose
    invoice row is missing here. Outcome counts."""
    counts: dict[str, int] = defaultdict(int)
    held: dict[str, list[IncomingEvent]] = defaultdict(list)
    batch = [(dumps(message), str(subject), None) for subject, message in messages]
    for (data, subject, _), outcome in zip(batch, receive_batch(batch), strict=True):
        counts[outcome.value if outcome else "failed"] += 1
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
    check_writer_and_hash(event, applier)
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
    seconds: dict[str, float] = field(default_factory=dict)  # per step, for the log

    def timed(self, step: str, since: float) -> float:
        now = time.monotonic()
        self.seconds[step] = round(now - since, 2)
        return now

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


def _ahead(pool: ThreadPoolExecutor, call: Callable[[Any], Any], items: list[Any]) -> Iterator[Any]:
    """`call(item)` for each item in order, the next one already asked while the caller works
    on the current answer (the peer computes while this node does)."""
    if not items:
        return
    pending = pool.submit(call, items[0])
    for item in items[1:]:
        got, pending = pending.result(), pool.submit(call, item)
        yield got
    yield pending.result()


def _their_buckets(peer: Peer, scope: Scope, stop: threading.Event) -> dict[str, Any]:
    theirs: dict[str, Any] = {}
    for window in _date_windows(scope):
        if stop.is_set():  # this node's own digests failed: the run fails anyway
            break
        got = _ask(peer, {"op": "digests", "scope": window.as_dict()})["buckets"]
        theirs.update({k: tuple(v) for k, v in got.items()})
    return theirs


def compare(peer: Peer, scope: Scope, report: RunReport) -> list[Difference]:
    """Drill down from buckets to cells to entries; the differences found. Both nodes compute
    their digests at the same time: the peer's are asked for before this node's own."""
    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="piaotong-reconcile-ask") as pool:
        asked = pool.submit(_their_buckets, peer, scope, stop)
        try:
            my_cells = local_cells(scope)
        except BaseException:
            stop.set()
            raise
        theirs = asked.result()
        mine = bucket_digests(my_cells)
        report.invoices_here = sum(count for count, _ in mine.values())
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
        return _compare_cells(pool, peer, scope, cells)


def _compare_cells(
    pool: ThreadPoolExecutor, peer: Peer, scope: Scope, cells: list[tuple[str, str]]
) -> list[Difference]:
    """The entries of `cells` here and at the peer (asked meanwhile), compared."""
    if not cells:
        return []

    def leaves(chunk: list[tuple[str, str]]) -> list[Entry]:
        narrow = scope.narrowed(b.split(":")[1] for b, _ in chunk)
        got = _ask(peer, {"op": "leaves", "scope": narrow.as_dict(), "cells": chunk})
        return [Entry.from_list(e) for e in got["entries"]]

    asked = [pool.submit(leaves, chunk) for chunk in _chunks(cells, CELLS_PER_REQUEST)]
    wanted = set(cells)
    narrow = scope.narrowed(b.split(":")[1] for b, _ in cells)
    here = [e for e in iter_entries(narrow) if (e.bucket, e.cell) in wanted]
    there = [entry for future in asked for entry in future.result()]
    return diff_entries(here, there)


def _streams(differences: list[Difference], kinds: set[str]) -> list[str]:
    return [f"invoice:{d.uid}" for d in differences if d.kind in kinds]


def repair(peer: Peer, report: RunReport) -> None:
    """Fetch what is missing or older here (the next chunk asked while this one is applied);
    push what is missing or older at the peer."""
    fetch = _streams(report.differences, {"missing_here", "stale_here"})

    def events(chunk: list[str]) -> list[list[Any]]:
        return list(_ask(peer, {"op": "events", "streams": chunk})["messages"])

    with ThreadPoolExecutor(1, thread_name_prefix="piaotong-reconcile-fetch") as pool:
        for messages in _ahead(pool, events, list(_chunks(fetch, STREAMS_PER_REQUEST))):
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
    with ThreadPoolExecutor(1, thread_name_prefix="piaotong-reconcile-ask") as pool:
        left = _compare_cells(pool, peer, scope, cells)
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
        step = report.timed("compare", clock)
        if repair_differences and report.differences:
            repair(peer, report)
            step = report.timed("repair", step)
            verify_repairs(peer, scope, report)
            report.timed("verify", step)
        else:
            report.left, report.unrepaired = report.differences, len(report.differences)
    except Exception as exc:  # recorded: a run that failed is shown, not lost
        log.exception("reconciliation with %s failed", peer_id)
        error = f"{type(exc).__name__}: {exc}"
    steps = ", ".join(f"{name} {seconds} s" for name, seconds in report.seconds.items())
    log.info("reconciliation with %s: %d invoices here; %s", peer_id, report.invoices_here, steps)
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
