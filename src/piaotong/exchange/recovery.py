"""Recovery after a restore (恢复后追回): a node restored from an old backup takes back from the
hub what it wrote itself after the backup, before it may issue again.

A restored regional node has lost the invoices it issued after the backup and every other fact
it wrote since (voids, red-letter steps, buyer-side facts), although the hub holds them all; its
number sequence is back where it was at backup time, so the next invoice would take a number
that already exists elsewhere. Hence:

1. the restore records a `NodeRecovery` row (`do_mark_restored`), and while a row is
   `recovering` the issuing actions refuse (`require_issuing_allowed`, called at the start of
   every issuing path in `invoices.actions`) with a message naming the backup's time;
2. the consumer process starts `RecoveryLoop` (from `reconcile_responder.start_in_worker`), and
   `piaotong recover` runs the same on demand: `recover(hub)` asks the hub over NATS
   request/reply (`recovery_source`, subject `piaotong.recover.<hub node id>`), first whether it
   has applied the whole stream as it was when recovery started, then, page by page, for

   - *own* events: every event this node wrote that the hub applied since `since` (the backup's
     time less a margin), plus those the hub holds parked;
   - *foreign* events: other nodes' events routed to this node's region that the hub applied
     since `since`, and the hub's own (authority) events routed there: this node had applied
     them too, and its durable consumer will not deliver them again;
3. own events are applied here as their writer: the envelope, hash, chain position and rightful
   writer are checked as by the consumer, the event is stored in the ledger exactly as signed
   (same id, seq, prev_hash, hash), its kind's own-replay function rebuilds the rows its action
   wrote, or its apply-function when the kind has none (`apply.register_own_replay`: the
   deduction app's rows, the red-letter answer that issues no second red invoice; an
   `InvoiceIssued` is checked against this node's own signing key), its outbox row is written as
   published (with the hub's stream sequence), and an issued invoice advances the number sequence
   of its (year, region, channel) past its number and adds its amount to the month's quota usage;
   foreign events go through the consumer's own path (`inbox.receive`);
4. events that cannot apply yet are retried, in passes, as long as a pass makes progress (a red
   flush needs its confirmation, which a buyer's event may bring);
5. when nothing is left, the row is `complete`, an audit entry records the counts and issuing
   resumes; then the events the consumer quarantined since the restore are released once (a
   buyer's confirmation that arrived meanwhile could not issue its red invoice while issuing
   was paused). When the hub cannot be reached, the row stays `recovering` with the error, and the
   loop tries again (5 s, backing off to 60 s).

Invoices the node issued after the backup and never published (its relay was behind when it was
lost) are held nowhere and cannot be recovered; see docs/operations.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.exchange.apply import ApplyLater, ReceivedApplier, applier_for
from piaotong.exchange.choices import NodeRole, QuarantineReason
from piaotong.exchange.config import number, setting
from piaotong.exchange.inbox import (
    Outcome,
    check_writer_and_hash,
    receive,
    release_quarantined,
    retry_parked,
)
from piaotong.exchange.messages import IncomingEvent, Poison, dumps, parse_message
from piaotong.exchange.models import Node, NodeRecovery, OutboxEvent, QuarantinedEvent
from piaotong.exchange.nodes import this_node
from piaotong.ledger.actions import record_audit
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.errors import RuleViolation

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "piaotong.recover"
PAGE = 500
ISSUED = "InvoiceIssued"
# A transaction that began before the backup may have committed after it: ask for events from
# this long before the backup's time (events held here already are skipped).
DEFAULT_MARGIN_SECONDS = 600.0
# A process that found no recovery under way believes it for this long (the guard runs on the
# issuing hot path; a restore happens with the node's processes stopped).
CLEAR_FOR_SECONDS = 1.0

Hub = Callable[[dict[str, Any]], dict[str, Any]]
Say = Callable[[str], None]


def subject_of(node_id: str) -> str:
    """
    >>> subject_of("node-00")
    'piaotong.recover.node-00'
    """
    return f"{SUBJECT_PREFIX}.{node_id}"


class HubUnreachable(RuntimeError):
    """The hub did not answer (NATS down, no responder, timeout): try again later."""


class NotFinished(RuntimeError):
    """The hub answered, but recovery cannot complete yet (the reason says why)."""


# --- the state, and the guard on issuing -------------------------------------------------------


def active_recovery() -> NodeRecovery | None:
    return NodeRecovery.objects.filter(state=NodeRecovery.State.RECOVERING).first()


def latest_recovery() -> NodeRecovery | None:
    return NodeRecovery.objects.first()


_clear_until = 0.0


def forget() -> None:
    """Drop this process's belief that no recovery is under way (after changing the state)."""
    global _clear_until
    _clear_until = 0.0


def _local(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "?"


def require_issuing_allowed() -> None:
    """Refuse to issue while this node recovers its own invoices (`RuleViolation` on "node").

    Called at the start of every issuing path: a restored node's number sequence is behind
    the numbers it already gave out, so any number it took now could exist elsewhere.
    """
    _require_not_recovering(
        _(
            "This node was restored from a backup of %(backup)s and is recovering its own "
            "invoices from the hub (since %(since)s). Issuing is paused until recovery completes, "
            "so that no invoice number is given twice: retry after recovery, usually within "
            "minutes."
        )
    )


def require_writing_allowed() -> None:
    """Refuse to write an exchanged fact (void, red letter, booking, deduction…) while this
    node recovers: its invoices' histories here may lack events the hub holds, and a fact
    written now could take a position in a stream that an event being recovered holds."""
    _require_not_recovering(
        _(
            "This node was restored from a backup of %(backup)s and is recovering its own "
            "invoices from the hub (since %(since)s). Changes to invoices are paused until "
            "recovery completes, so that nothing written here contradicts what the hub holds: "
            "retry after recovery, usually within minutes."
        )
    )


def _require_not_recovering(message: str | Promise) -> None:
    global _clear_until
    if _RECOVERING.get() or time.monotonic() < _clear_until:
        return
    row = (
        NodeRecovery.objects.filter(state=NodeRecovery.State.RECOVERING)
        .values_list("backup_created_at", "restored_at")
        .first()
    )
    if row is None:
        _clear_until = time.monotonic() + CLEAR_FOR_SECONDS
        return
    backup, restored = row
    raise RuleViolation(
        "node",
        "node_recovering",
        message,
        {"backup": _local(backup or restored), "since": _local(restored)},
    )


# True while recovery itself replays events (it may write what the guards refuse to others).
_RECOVERING: ContextVar[bool] = ContextVar("exchange_recovery_replaying", default=False)


def recovery_needed() -> tuple[bool, str]:
    """Whether a restored node must recover from the hub, and why (or why not)."""
    me = this_node()
    if me.is_hub:
        return False, "the hub issues no invoices; reconciliation repairs what it lacks"
    in_exchange = (
        bool(setting("PIAOTONG_NATS_URL")) or Node.objects.filter(role=NodeRole.HUB).exists()
    )
    if not in_exchange:
        return False, "this node runs alone (no PIAOTONG_NATS_URL, no hub in its registry)"
    return True, "a regional node of the exchange"


def margin() -> timedelta:
    return timedelta(seconds=number("PIAOTONG_RECOVERY_MARGIN_SECONDS", DEFAULT_MARGIN_SECONDS))


def do_mark_restored(archive: str, backup_created_at: datetime | None) -> NodeRecovery | None:
    """Record, right after a restore, that this node must recover from the hub (or None when
    it need not: the hub, or a node running alone). An unfinished earlier recovery is folded
    into the new one (its earlier `since` is kept)."""
    needed, _why = recovery_needed()
    if not needed:
        return None
    now = timezone.now()
    since = (backup_created_at or now) - margin()
    with transaction.atomic():
        for older in NodeRecovery.objects.select_for_update().filter(
            state=NodeRecovery.State.RECOVERING
        ):
            since = min(since, older.since)
            older.state, older.completed_at = NodeRecovery.State.ABANDONED, now
            older.note = f"superseded by the restore of {archive} at {now.isoformat()}"
            older.save(update_fields=["state", "completed_at", "note"])
        row = NodeRecovery.objects.create(
            state=NodeRecovery.State.RECOVERING,
            archive=archive[:200],
            backup_created_at=backup_created_at,
            restored_at=now,
            since=since,
        )
    forget()
    return row


def do_begin_recovery(since: datetime, note: str = "") -> NodeRecovery:
    """Start a recovery by hand (a database restored by other means, e.g. point-in-time)."""
    with transaction.atomic():
        row = active_recovery()
        if row is None:
            row = NodeRecovery.objects.create(
                state=NodeRecovery.State.RECOVERING,
                restored_at=timezone.now(),
                since=since,
                note=note,
            )
            record_audit(
                Actor(),
                "node.recovery_begun",
                f"node:{this_node().node_id}",
                details={"since": since.isoformat(), "note": note},
            )
    forget()
    return row


def do_abandon_recovery(reason: str) -> NodeRecovery | None:
    """An operator ends a recovery without completing it (issuing resumes): audited."""
    with transaction.atomic():
        row = active_recovery()
        if row is None:
            return None
        row.state, row.completed_at = NodeRecovery.State.ABANDONED, timezone.now()
        row.note = reason[:2000]
        row.save(update_fields=["state", "completed_at", "note"])
        record_audit(
            Actor(),
            "node.recovery_abandoned",
            f"node:{this_node().node_id}",
            details={"reason": reason, "progress": row.progress},
        )
    forget()
    return row


# --- one event of this node's own, applied as its writer --------------------------------------


@dataclass
class Item:
    """One event as the hub sent it: subject, message, stream sequence, when the hub got it."""

    subject: str
    message: dict[str, Any]
    stream_seq: int | None
    received_at: datetime | None
    reason: str = ""  # why it has not applied yet

    @classmethod
    def from_answer(cls, values: list[Any]) -> Item:
        subject, message, stream_seq, received = values
        moment = datetime.fromisoformat(received) if received else None
        return cls(str(subject), message, int(stream_seq) if stream_seq else None, moment)

    @property
    def order(self) -> tuple[datetime, str, int]:
        """When it happened, then its position: a writer's events in the order it wrote them."""
        event = self.message.get("event") or {}
        try:
            moment = datetime.fromisoformat(str(event.get("occurred_at")))
        except ValueError:
            moment = datetime.min.replace(tzinfo=UTC)  # unreadable: apply_own says why
        return moment, str(event.get("stream", "")), int(event.get("seq") or 0)


class Later(Exception):
    """This event cannot apply yet; another pass may let it."""


APPLIED, HELD = "applied", "held"


def apply_own(item: Item) -> str:
    """Apply one of this node's own events as its writer; APPLIED or HELD (already here).

    Raises `Later` when it cannot apply yet, `Poison` when it never will as it is.
    """
    event = parse_message(dumps(item.message), item.subject)
    if not isinstance(event, IncomingEvent) or event.writer != settings.PIAOTONG_NODE_ID:
        raise Poison(QuarantineReason.WRONG_WRITER, "not an event of this node")
    try:
        with transaction.atomic():
            if LedgerEvent.objects.filter(event_id=event.event_id).exists():
                return HELD
            applier = _check(event)
            with transaction.atomic():  # a savepoint: a refusing apply-function leaves nothing
                token = _RECOVERING.set(True)
                try:
                    _store(event, item, applier)
                finally:
                    _RECOVERING.reset(token)
    except ApplyLater as later:
        raise Later(later.detail) from None
    except IntegrityError:  # applied meanwhile by another run (the manual command, the loop)
        if LedgerEvent.objects.filter(event_id=event.event_id).exists():
            return HELD
        raise
    return APPLIED


def _check(event: IncomingEvent) -> ReceivedApplier | None:
    """The consumer's checks, for an event of this node: schema, writer, hash, position.
    Returns the kind's applier (None for a kind that only the ledger keeps)."""
    applier = applier_for(event.kind)
    check_writer_and_hash(event, applier)  # an unknown writer: ApplyLater → Later
    last = (
        LedgerEvent.objects.filter(stream=event.stream, writer=event.writer)
        .order_by("-seq")
        .values_list("seq", "hash")
        .first()
    )
    last_seq, last_hash = last if last else (0, "")
    if event.seq <= last_seq:
        raise Poison(
            QuarantineReason.CONFLICT, f"seq {event.seq} of {event.stream} is another event here"
        )
    if event.seq > last_seq + 1:
        raise Later(f"waiting for seq {last_seq + 1} of {event.stream}")
    if event.prev_hash != last_hash:
        raise Poison(
            QuarantineReason.BROKEN_PREV_HASH,
            f"prev_hash does not link to seq {last_seq} of {event.stream} held here",
        )
    return applier


def _store(event: IncomingEvent, item: Item, applier: ReceivedApplier | None) -> None:
    """The event as written, the rows its action wrote (the app's own-replay: for an invoice
    also its number sequence and quota usage), its outbox row (published)."""
    stored = LedgerEvent.objects.create(
        event_id=event.event_id,
        stream=event.stream,
        writer=event.writer,
        seq=event.seq,
        kind=event.kind,
        schema_version=event.schema_version,
        payload=event.original_payload,
        prev_hash=event.prev_hash,
        hash=event.hash,
        occurred_at=event.occurred_at,
    )
    if applier is not None:
        applier.replay_own(event)  # also wakes other writers' events parked behind this one
    OutboxEvent.objects.create(
        ledger_event=stored,
        subject=item.subject,
        schema=f"piaotong.{event.kind}",
        schema_version=event.schema_version,
        published_at=item.received_at or timezone.now(),
        stream_seq=item.stream_seq,
    )


# --- a run -------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one run found and did."""

    counts: Counter[str] = field(default_factory=Counter)
    waiting: list[Item] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


def apply_own_items(items: list[Item], tally: Tally) -> list[Item]:
    """Apply own events in their order, in passes while a pass makes progress; the ones left."""
    waiting = sorted(items, key=lambda i: i.order)
    while waiting:
        left: list[Item] = []
        for item in waiting:
            try:
                outcome = apply_own(item)
            except (Later, Poison) as exc:
                item.reason = str(exc)
                left.append(item)
                continue
            except Exception as exc:  # an apply-function failed unexpectedly: tried again
                log.exception("recovery: could not apply %s", item.order)
                item.reason = f"{type(exc).__name__}: {exc}"
                left.append(item)
                continue
            tally.counts[f"own_{outcome}"] += 1
            if outcome == APPLIED and item.message["event"]["kind"] == ISSUED:
                tally.counts["invoices_recovered"] += 1
        if len(left) == len(waiting):
            return left
        waiting = left
    return []


def receive_foreign(items: list[Item], tally: Tally) -> None:
    """Other nodes' events through the consumer's path (idempotent on the event id)."""
    for item in sorted(items, key=lambda i: i.order):
        outcome = receive(dumps(item.message), item.subject, item.stream_seq)
        tally.counts[f"foreign_{outcome.value}"] += 1


def _ask(hub: Hub, request: dict[str, Any]) -> dict[str, Any]:
    answer = hub(request)
    if "error" in answer:
        raise NotFinished(f"the hub refused {request.get('op')}: {answer['error']}")
    return answer


def _pages(hub: Hub, request: dict[str, Any]) -> Iterator[list[Item]]:
    after: int | None = 0
    while after is not None:
        answer = _ask(hub, request | {"after": after, "limit": PAGE})
        yield [Item.from_answer(values) for values in answer["events"]]
        after = answer.get("next")


def wait_for_hub(hub: Hub, stream_seq: int, timeout: float, say: Say) -> None:
    """The hub must have applied the stream up to `stream_seq` (what this node published
    before it was lost is there by then); waits up to `timeout`, else NotFinished."""
    deadline = time.monotonic() + timeout
    while True:
        answer = _ask(hub, {"op": "status", "stream_seq": stream_seq})
        if answer.get("caught_up"):
            return
        status = (
            f"the hub has applied the stream up to message {answer.get('applied_through')} "
            f"of {stream_seq} ({answer.get('pending')} pending)"
        )
        if time.monotonic() >= deadline:
            raise NotFinished(f"{status}: waiting for it to catch up")
        say(status)
        time.sleep(0.5)


@dataclass(frozen=True)
class Result:
    """The outcome of one attempt: the row as it is now and what this attempt did."""

    recovery: NodeRecovery | None
    counts: dict[str, int]
    error: str = ""
    left: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.recovery is not None and self.recovery.state == NodeRecovery.State.COMPLETE


def recover(
    hub: Hub,
    *,
    stream_seq: int | None = None,
    catch_up_timeout: float = 0.0,
    say: Say = lambda _: None,
) -> Result:
    """One attempt at the active recovery (see the module docstring); recorded on its row."""
    row = active_recovery()
    if row is None:
        return Result(None, {})
    _note_attempt(row)
    tally = Tally()
    try:
        if stream_seq is not None:
            wait_for_hub(hub, stream_seq, catch_up_timeout, say)
        _run(hub, row, tally, say)
    except (HubUnreachable, NotFinished) as exc:
        return _failed(row, tally, str(exc), say)
    row = _complete(row, tally)
    # Only now that issuing is allowed again: events refused while it was paused.
    tally.counts["released"] += release_refused(row.restored_at)
    return Result(row, tally.as_dict())


def _run(hub: Hub, row: NodeRecovery, tally: Tally, say: Say) -> None:
    me, since = this_node(), row.since.isoformat()
    base = {"writer": me.node_id, "region": me.region, "since": since}
    waiting: list[Item] = []
    for page in _pages(hub, base | {"op": "own"}):
        waiting = apply_own_items(waiting + page, tally)
        say(
            f"own events: {tally.counts['own_applied']} recovered, "
            f"{tally.counts['own_held']} already here, {len(waiting)} waiting"
        )
    parked = [Item.from_answer(v) for v in _ask(hub, base | {"op": "parked"})["events"]]
    waiting = apply_own_items(waiting + parked, tally)
    for op in ("foreign", "authority"):
        for page in _pages(hub, base | {"op": op}):
            receive_foreign(page, tally)
            waiting = apply_own_items(waiting, tally)
    say(
        f"other nodes' events: {tally.counts['foreign_applied']} applied, "
        f"{tally.counts['foreign_duplicate']} already here"
    )
    tally.counts["parked_applied"] += retry_parked()
    waiting = apply_own_items(waiting, tally)
    if waiting:
        tally.waiting = waiting
        first = waiting[0]
        raise NotFinished(
            f"{len(waiting)} of this node's events cannot be applied yet, e.g. "
            f"{first.message['event']['kind']} of {first.message['event']['stream']}: "
            f"{first.reason}"
        )


def release_refused(since: datetime) -> int:
    """Release the events quarantined here since the restore, once recovery is complete (a
    buyer's confirmation that would have issued a red invoice while issuing was paused); those
    that fit now apply, the others stay quarantined with their reason. The count applied."""
    released = 0
    rows = QuarantinedEvent.objects.filter(released_at__isnull=True, quarantined_at__gte=since)
    for row in list(rows.order_by("pk")):
        if release_quarantined(row) == Outcome.APPLIED:
            released += 1
    return released


def _note_attempt(row: NodeRecovery) -> None:
    NodeRecovery.objects.filter(pk=row.pk).update(
        attempts=F("attempts") + 1, last_attempt_at=timezone.now()
    )


def _failed(row: NodeRecovery, tally: Tally, error: str, say: Say) -> Result:
    log.warning("recovery not complete: %s", error)
    say(f"not complete: {error}")
    progress = _merged(row, tally)
    NodeRecovery.objects.filter(pk=row.pk).update(last_error=error[:4000], progress=progress)
    row.refresh_from_db()
    left = tuple(f"{i.message['event']['stream']}: {i.reason}" for i in tally.waiting[:20])
    return Result(row, tally.as_dict(), error, left)


def _merged(row: NodeRecovery, tally: Tally) -> dict[str, int]:
    total = Counter({k: int(v) for k, v in (row.progress or {}).items()})
    total.update(tally.counts)
    return dict(sorted(total.items()))


def _complete(row: NodeRecovery, tally: Tally) -> NodeRecovery:
    with transaction.atomic():
        row = NodeRecovery.objects.select_for_update().get(pk=row.pk)
        if row.state != NodeRecovery.State.RECOVERING:
            return row  # finished meanwhile by another run
        row.state, row.completed_at = NodeRecovery.State.COMPLETE, timezone.now()
        row.progress, row.last_error = _merged(row, tally), ""
        row.save(update_fields=["state", "completed_at", "progress", "last_error"])
        details = {"since": row.since.isoformat(), "archive": row.archive} | row.progress
        record_audit(Actor(), "node.recovered", f"node:{this_node().node_id}", details=details)
    forget()
    return row


# --- over NATS -----------------------------------------------------------------------------------


def hub_node_id() -> str:
    hub = Node.objects.filter(role=NodeRole.HUB).order_by("node_id").first()
    if hub is None:
        raise NotFinished("no hub in this node's registry: start the hub, then retry")
    return hub.node_id


def nats_hub(link: Any, node_id: str, timeout: float = 60.0) -> Hub:
    """A `Hub` that asks `node_id`'s recovery responder over NATS (`link` is a NatsLink)."""
    import orjson

    from piaotong.exchange.natslink import NatsUnavailable

    def ask(request: dict[str, Any]) -> dict[str, Any]:
        try:
            data = link.request(subject_of(node_id), orjson.dumps(request), timeout)
        except NatsUnavailable as exc:
            raise HubUnreachable(f"NATS unreachable: {exc}") from exc
        except Exception as exc:  # no responders, timeout: the hub's consumer is not running
            raise HubUnreachable(f"the hub {node_id} did not answer: {exc!r}") from exc
        answer: dict[str, Any] = orjson.loads(data)
        return answer

    return ask


def recover_over_nats(
    link: Any, catch_up_timeout: float = 0.0, say: Say = lambda _: None
) -> Result:
    """One attempt through the NATS link: the stream's position, then `recover`."""
    row = active_recovery()
    if row is None:
        return Result(None, {})
    try:
        hub = nats_hub(link, hub_node_id())
        if not link.connect():
            raise HubUnreachable(f"NATS unreachable: {link.last_error}")
        stream_seq = int(link.stream_info().state.last_seq)
    except (HubUnreachable, NotFinished) as exc:
        _note_attempt(row)
        return _failed(row, Tally(), str(exc), say)
    except Exception as exc:  # the stream cannot be read: NATS is not usable
        _note_attempt(row)
        return _failed(row, Tally(), f"NATS unreachable: {exc!r}", say)
    return recover(hub, stream_seq=stream_seq, catch_up_timeout=catch_up_timeout, say=say)


class RecoveryLoop:
    """In the consumer process: attempts until the active recovery completes (backing off)."""

    def __init__(
        self, link: Any, stop: threading.Event, after: Callable[[date], Any] | None = None
    ) -> None:
        self.link, self.stop, self.after = link, stop, after
        self.first = number("PIAOTONG_RECOVERY_RETRY_SECONDS", 5.0)

    def run(self) -> None:
        pause = self.first
        while not self.stop.is_set():
            close_old_connections()
            try:
                if active_recovery() is None:
                    return
                result = recover_over_nats(self.link, catch_up_timeout=10.0, say=log.info)
                if result.recovery is None or result.complete:
                    log.info("recovery complete: %s", result.counts)
                    if result.recovery is not None and self.after is not None:
                        self.after(timezone.localdate(result.recovery.since))
                    return
            except Exception:
                log.exception("recovery attempt failed; the next one comes")
            self.stop.wait(pause)
            pause = min(pause * 2, 60.0)

    def start(self) -> threading.Thread | None:
        close_old_connections()
        if active_recovery() is None:
            return None
        thread = threading.Thread(target=self.run, name="piaotong-recovery", daemon=True)
        thread.start()
        return thread
