"""Receiving one message (收件): the idempotent, ordered apply path of every consumer.

`receive(data, subject)` decides, in one transaction, what a delivered message means here:

- a duplicate (its event id is in the inbox, parked or quarantined already): nothing to do;
- this node's own event coming back: nothing to do (it is in the ledger already);
- poison (unreadable, unknown or newer schema, wrong writer, bad hash, broken chain link, bad
  signature, conflicting content): a quarantine row with the reason;
- early (a predecessor of the same (stream, writer) is missing, or the writer's key is not
  known yet): a parked row, applied when the cause is gone;
- otherwise applied: the event is stored in the local ledger under its writer, its kind's
  apply-function runs, an inbox row records it, and parked successors are applied in turn.

The caller acknowledges the message only after `receive` returned (the transaction committed),
so a crash in between means a redelivery, which the inbox turns into a duplicate.

`receive_batch(messages)` is the consumer's form: every message of a fetched batch in one
transaction (one commit, one fsync), each in its own savepoint, in delivery order. Poison is
quarantined and early events are parked exactly as by `receive`; an event parked early in the
batch is applied when its predecessor comes later in the same batch (the parked row is visible
inside the transaction). A message whose handling fails unexpectedly is rolled back alone and
answered `None` (the caller naks it, it comes back); a database that cannot be used
(`OperationalError`, `InterfaceError`: locked past the busy timeout, connection lost) rolls back
the whole batch and is raised, for the caller to retry it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from piaotong.accounts.access import Actor
from piaotong.exchange.apply import (
    ApplyLater,
    ReceivedApplier,
    applier_for,
    bulk_applier_for,
    known_parked,
)
from piaotong.exchange.choices import ParkReason, QuarantineReason
from piaotong.exchange.memo import batch_memo, forget
from piaotong.exchange.messages import (
    IncomingEvent,
    Poison,
    RegistryMessage,
    dumps,
    parse_message,
)
from piaotong.exchange.models import InboxEvent, ParkedEvent, QuarantinedEvent
from piaotong.exchange.nodes import (
    ANNOUNCE_SCHEMA,
    do_apply_announcement,
    do_apply_registry,
    node_of,
    this_node,
)
from piaotong.exchange.writers import wrong_writer
from piaotong.fastsql import Rows, build, insert_many, insert_rows
from piaotong.ledger.actions import record_audit
from piaotong.ledger.models import LedgerEvent
from piaotong.lib import signing

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    OWN = "own"
    PARKED = "parked"
    QUARANTINED = "quarantined"
    REGISTRY = "registry"
    IGNORED = "ignored"


def receive(data: bytes, subject: str, stream_seq: int | None = None) -> Outcome:
    """Apply one delivered message, idempotently; see the module docstring."""
    try:
        message = parse_message(data, subject)
    except Poison as poison:
        return _quarantine_raw(data, subject, stream_seq, poison)
    return _receive(message, data, subject, stream_seq, None)


@dataclass
class _Batch:
    """What a batch's transaction knows, read once for all its messages instead of per event:
    the event ids already held (inbox, parked, quarantine) and the (stream, writer) pairs with
    parked events. Kept up to date as the batch's events are received."""

    seen: set[uuid.UUID] = field(default_factory=set)
    parked: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def read(cls, events: list[IncomingEvent]) -> _Batch:
        ids = [e.event_id for e in events]
        streams = {e.stream for e in events}
        seen: set[uuid.UUID] = set()
        for model in (InboxEvent, ParkedEvent, QuarantinedEvent):
            held = model.objects.filter(event_id__in=ids).values_list("event_id", flat=True)
            seen.update(event_id for event_id in held if event_id is not None)
        parked = ParkedEvent.objects.filter(stream__in=streams).values_list("stream", "writer")
        return cls(seen, set(parked))

    def received(self, event: IncomingEvent, outcome: Outcome) -> None:
        if outcome in (Outcome.APPLIED, Outcome.PARKED, Outcome.QUARANTINED):
            self.seen.add(event.event_id)
        if outcome == Outcome.PARKED:
            self.parked.add((event.stream, event.writer))


def _receive(
    message: IncomingEvent | RegistryMessage,
    data: bytes,
    subject: str,
    stream_seq: int | None,
    batch: _Batch | None,
) -> Outcome:
    if isinstance(message, RegistryMessage):
        return _receive_registry(message, data, subject, stream_seq)
    message.stream_seq = stream_seq
    if message.writer == settings.PIAOTONG_NODE_ID:
        return Outcome.OWN
    if batch is not None:
        # The caller's savepoint isolates the event: a refusal (Poison, ApplyLater) goes up to
        # it, and it writes the quarantine or parked row after rolling the event back.
        if message.event_id in batch.seen:
            return Outcome.DUPLICATE
        outcome = _check_and_apply(message, None, isolated=False)
    else:
        with transaction.atomic():
            if _already_seen(message):
                return Outcome.DUPLICATE
            outcome = _process(message)
    if outcome == Outcome.APPLIED and (
        batch is None or (message.stream, message.writer) in batch.parked
    ):
        _apply_parked_successors(message)
    return outcome


# The database itself failed (not this message): the whole batch is rolled back and retried.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


def receive_batch(
    messages: Sequence[tuple[bytes, str, int | None]],
) -> list[Outcome | None]:
    """Apply (data, subject, stream seq) messages in one transaction; see the module docstring.

    Returns one outcome per message, `None` for one that failed on its own (rolled back to its
    savepoint; nothing of it was written). Raises `DATABASE_UNAVAILABLE` errors: then nothing
    of the batch was committed.
    """
    outcomes: list[Outcome | None] = []
    committed: list[bool] = []
    parsed: list[IncomingEvent | RegistryMessage | Poison] = []
    for data, subject, _ in messages:
        try:
            parsed.append(parse_message(data, subject))
        except Poison as poison:
            parsed.append(poison)
    try:
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(True))  # runs first after the commit
            batch = _Batch.read([m for m in parsed if isinstance(m, IncomingEvent)])
            with batch_memo(), known_parked(batch.parked), signing.checks_ahead():
                lane = _BulkLane.read(batch, parsed)
                lane.start_ahead(parsed)
                for index, ((data, subject, stream_seq), message) in enumerate(
                    zip(messages, parsed, strict=True)
                ):
                    if lane.take(index, message, data, subject, stream_seq):
                        outcomes.append(None)  # set when the lane is stored
                        continue
                    lane.store(outcomes)  # earlier events first: this one may need them
                    outcomes.append(_receive_in_batch(message, data, subject, stream_seq, batch))
                lane.store(outcomes)
            _audit_batch(messages, outcomes)
    except Exception:
        if not committed:
            raise
        # The batch committed; a hook after it (waking parked events of other writers) failed.
        # Those events stay parked and are tried again by the next event of their stream.
        log.exception("after applying a batch: waking parked events failed")
    return outcomes


@dataclass
class _Staged:
    index: int
    event: IncomingEvent
    data: bytes
    subject: str
    prepared: object


@dataclass
class _BulkLane:
    """The first events of new streams whose kind has a bulk form (`apply.BulkApplier`),
    checked one by one and written many rows per statement: for a batch of new invoices the
    per-event statements and savepoints were most of the consumer's time.

    An event takes the lane only when nothing about it is unusual: the first event (seq 1,
    no previous hash) of a stream this node holds nothing of, not held, parked or staged
    already, no parked event on its stream, its writer known and rightful, its hash right and
    its kind's `prepare` content with it. Anything else (including every refusal) goes the
    one-by-one way, which decides and records the outcome. Staged events are stored before
    the next one-by-one event and at the end of the batch; if storing fails (a row that
    exists after all), the group is rolled back and each of its events goes the one-by-one way.
    """

    batch: _Batch
    held_streams: set[str]
    staged: list[_Staged] = field(default_factory=list)
    staged_streams: set[str] = field(default_factory=set)
    staged_ids: set[uuid.UUID] = field(default_factory=set)

    @classmethod
    def read(
        cls, batch: _Batch, parsed: Sequence[IncomingEvent | RegistryMessage | Poison]
    ) -> _BulkLane:
        streams = [m.stream for m in parsed if isinstance(m, IncomingEvent) and m.seq == 1]
        held = set()
        if streams:
            rows = LedgerEvent.objects.filter(stream__in=streams).values_list("stream", flat=True)
            held = set(rows.distinct())
        return cls(batch, held)

    def start_ahead(self, parsed: Sequence[IncomingEvent | RegistryMessage | Poison]) -> None:
        """Let each kind start what its `prepare` will need for the events that may take the
        lane (`BulkApplier.ahead`): their signatures are checked on another core meanwhile."""
        by_kind: dict[str, list[IncomingEvent]] = {}
        for message in parsed:
            if self._candidate(message):
                assert isinstance(message, IncomingEvent)
                by_kind.setdefault(message.kind, []).append(message)
        for kind, events in by_kind.items():
            bulk = bulk_applier_for(kind)
            if bulk is not None and bulk.ahead is not None:
                bulk.ahead(events)

    def _candidate(self, message: IncomingEvent | RegistryMessage | Poison) -> bool:
        return (
            isinstance(message, IncomingEvent)
            and message.seq == 1
            and not message.prev_hash
            and message.writer != settings.PIAOTONG_NODE_ID
            and message.stream not in self.held_streams
        )

    def take(
        self,
        index: int,
        message: IncomingEvent | RegistryMessage | Poison,
        data: bytes,
        subject: str,
        stream_seq: int | None,
    ) -> bool:
        """Stage the event if it can take the lane; False to receive it one by one."""
        if not isinstance(message, IncomingEvent) or message.seq != 1 or message.prev_hash:
            return False
        bulk = bulk_applier_for(message.kind)
        if bulk is None or message.writer == settings.PIAOTONG_NODE_ID:
            return False
        stream = message.stream
        if (
            message.event_id in self.batch.seen
            or message.event_id in self.staged_ids
            or stream in self.held_streams
            or stream in self.staged_streams
            or any(s == stream for s, _ in self.batch.parked)
        ):
            return False
        message.stream_seq = stream_seq
        try:
            prepared = self._prepare(message, bulk.prepare)
        except (Poison, ApplyLater):
            return False  # the one-by-one way records why
        if prepared is None:
            return False
        self.staged.append(_Staged(index, message, data, subject, prepared))
        self.staged_streams.add(stream)
        self.staged_ids.add(message.event_id)
        return True

    @staticmethod
    def _prepare(event: IncomingEvent, prepare: Callable[[IncomingEvent], object]) -> object:
        """The checks every event gets (`_check_envelope`), then the kind's own."""
        _check_envelope(event)
        return prepare(event)

    def store(self, outcomes: list[Outcome | None]) -> None:
        """Write what is staged; set the outcomes of its events."""
        if not self.staged:
            return
        staged, self.staged = self.staged, []
        self.staged_streams, self.staged_ids = set(), set()
        try:
            with transaction.atomic():  # a savepoint: a failure leaves nothing of the group
                self._write(staged)
        except DATABASE_UNAVAILABLE:
            raise
        except Exception as exc:
            forget()
            log.warning("storing %d events together failed (%r); one by one", len(staged), exc)
            for item in staged:
                seq = item.event.stream_seq
                outcomes[item.index] = _receive_in_batch(
                    item.event, item.data, item.subject, seq, self.batch
                )
            return
        for item in staged:
            outcomes[item.index] = Outcome.APPLIED
            self.batch.received(item.event, Outcome.APPLIED)

    @staticmethod
    def _write(staged: list[_Staged]) -> None:
        now = timezone.now()
        insert_many([_ledger_row(item.event) for item in staged])
        by_kind: dict[str, list[object]] = {}
        for item in staged:
            by_kind.setdefault(item.event.kind, []).append(item.prepared)
        for kind, prepared in by_kind.items():
            bulk = bulk_applier_for(kind)
            assert bulk is not None
            bulk.store(prepared)
        insert_many([_inbox_row(item.event, now, now) for item in staged])


def _audit_batch(
    messages: Sequence[tuple[bytes, str, int | None]], outcomes: list[Outcome | None]
) -> None:
    """One audit entry per batch that changed something: what it applied, parked, quarantined
    (each event itself is in the ledger and the inbox, parked or quarantine table)."""
    counts = {o.value: outcomes.count(o) for o in _AUDITED if o in outcomes}
    if not counts:
        return
    seqs = [seq for _, _, seq in messages if seq is not None]
    details: dict[str, object] = {"outcomes": counts}
    if seqs:
        details["stream_seq"] = [min(seqs), max(seqs)]
    record_audit(Actor(), "exchange.batch_received", "inbox", None, details)


_AUDITED = (Outcome.APPLIED, Outcome.PARKED, Outcome.QUARANTINED)


def _receive_in_batch(
    message: IncomingEvent | RegistryMessage | Poison,
    data: bytes,
    subject: str,
    stream_seq: int | None,
    batch: _Batch,
) -> Outcome | None:
    """One message of a batch in its own savepoint: a failure loses only this one (None)."""
    try:
        try:
            with transaction.atomic():
                if isinstance(message, Poison):
                    outcome = _quarantine_raw(data, subject, stream_seq, message)
                else:
                    outcome = _receive(message, data, subject, stream_seq, batch)
        except (Poison, ApplyLater) as refusal:  # the event's writes are rolled back
            forget()
            assert isinstance(message, IncomingEvent)
            with transaction.atomic():
                if isinstance(refusal, Poison):
                    outcome = _quarantine(message, refusal)
                else:
                    outcome = _park(message, refusal.reason)
    except DATABASE_UNAVAILABLE:
        raise
    except Exception:
        forget()  # its savepoint rolled back: what it wrote must not be remembered
        log.exception("could not apply a message on %s; it will come back", subject)
        return None
    if isinstance(message, IncomingEvent):  # only now: a rolled-back savepoint is not "seen"
        batch.received(message, outcome)
    return outcome


def _already_seen(event: IncomingEvent) -> bool:
    return (
        InboxEvent.objects.filter(event_id=event.event_id).exists()
        or ParkedEvent.objects.filter(event_id=event.event_id).exists()
        or QuarantinedEvent.objects.filter(event_id=event.event_id).exists()
    )


def _process(event: IncomingEvent, received_at: datetime | None = None) -> Outcome:
    """Check and apply one event inside the caller's transaction."""
    try:
        return _check_and_apply(event, received_at)
    except Poison as poison:
        forget()  # the event's savepoint rolled back
        return _quarantine(event, poison)
    except ApplyLater as later:
        forget()
        return _park(event, later.reason)


def _check_envelope(event: IncomingEvent) -> ReceivedApplier:
    """What every event must pass before its position is looked at: an apply-function for its
    kind (payload upgraded to what it reads), a known and rightful writer, a hash that covers
    the body. Raises Poison or ApplyLater."""
    applier = applier_for(event.kind)
    if applier is None:
        raise Poison(
            QuarantineReason.UNKNOWN_SCHEMA,
            f"no apply-function for {event.kind} events on this node; deploy the app that "
            "handles them, then release the event from quarantine",
        )
    check_writer_and_hash(event, applier)
    return applier


def check_writer_and_hash(event: IncomingEvent, applier: ReceivedApplier | None) -> None:
    """With the kind's applier: the payload upgraded to what it reads, and a known, rightful
    writer; always: a hash that covers the body. Raises Poison or ApplyLater. (Recovery makes
    the same checks of the node's own events, also of kinds only the ledger keeps.)"""
    if applier is not None:
        event.payload = applier.upgrade(event.original_payload, event.schema_version)
        writer = node_of(event.writer)
        if writer is None:
            raise ApplyLater(ParkReason.AWAITING_KEY, f"{event.writer} is not in the registry yet")
        reason = wrong_writer(
            applier.side,
            writer.role,
            writer.region,
            seller_region=event.seller_region,
            buyer_region=event.buyer_region,
        )
        if reason:
            raise Poison(QuarantineReason.WRONG_WRITER, reason)
    if not event.hash_matches():
        raise Poison(QuarantineReason.BAD_HASH, "the event's content does not match its hash")


def _check_and_apply(
    event: IncomingEvent, received_at: datetime | None, isolated: bool = True
) -> Outcome:
    """Check the event and apply it; raises Poison or ApplyLater. `isolated`: in a savepoint
    of its own (else the caller's savepoint must roll back what a refusal leaves)."""
    applier = _check_envelope(event)
    _check_position(event)
    # A savepoint: a refusing apply-function leaves nothing behind.
    with transaction.atomic() if isolated else nullcontext():
        _store_ledger_event(event)
        applier.apply(event)
        now = timezone.now()
        insert_rows([_inbox_row(event, received_at or now, now)])
    return Outcome.APPLIED


def _inbox_row(event: IncomingEvent, received_at: datetime, applied_at: datetime) -> InboxEvent:
    """The inbox row of an applied event, built without the ORM's keyword handling."""
    return build(
        InboxEvent,
        {
            "event_id": event.event_id,
            "stream": event.stream,
            "writer": event.writer,
            "seq": event.seq,
            "kind": event.kind,
            "schema_version": event.schema_version,
            "subject": event.subject,
            "stream_seq": event.stream_seq,
            "occurred_at": event.occurred_at,
            "received_at": received_at,
            "applied_at": applied_at,
        },
    )


def _last_sql() -> str:
    table = LedgerEvent._meta.db_table
    return (
        f"SELECT seq, hash FROM {table} WHERE stream = %s AND writer = %s "  # noqa: S608
        "ORDER BY seq DESC LIMIT 1"
    )


def _check_position(event: IncomingEvent) -> None:
    """The event must be the next of its (stream, writer) and link to the previous one."""
    last = Rows(_last_sql(), [event.stream, event.writer]).first()
    last_seq, last_hash = (int(last[0]), str(last[1])) if last else (0, "")
    if event.seq <= last_seq:
        held = LedgerEvent.objects.get(stream=event.stream, writer=event.writer, seq=event.seq)
        raise Poison(
            QuarantineReason.CONFLICT,
            f"seq {event.seq} of {event.stream} by {event.writer} is already event {held.event_id}",
        )
    if event.seq > last_seq + 1:
        raise ApplyLater(ParkReason.GAP, f"waiting for seq {last_seq + 1}")
    if event.prev_hash != last_hash:
        raise Poison(
            QuarantineReason.BROKEN_PREV_HASH,
            f"prev_hash does not match the hash of seq {last_seq} held here",
        )


def _store_ledger_event(event: IncomingEvent) -> None:
    insert_rows([_ledger_row(event)])


def _ledger_row(event: IncomingEvent) -> LedgerEvent:
    """The foreign event, stored under its writer exactly as hashed (original payload)."""
    return build(
        LedgerEvent,
        {
            "event_id": event.event_id,
            "stream": event.stream,
            "writer": event.writer,
            "seq": event.seq,
            "kind": event.kind,
            "schema_version": event.schema_version,
            "payload": event.original_payload,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
            "occurred_at": event.occurred_at,
        },
    )


def _park(event: IncomingEvent, reason: ParkReason) -> Outcome:
    ParkedEvent.objects.create(
        event_id=event.event_id,
        stream=event.stream,
        writer=event.writer,
        seq=event.seq,
        kind=event.kind,
        subject=event.subject,
        stream_seq=event.stream_seq,
        reason=reason,
        message=event.message,
    )
    return Outcome.PARKED


def _quarantine(event: IncomingEvent, poison: Poison) -> Outcome:
    log.warning("quarantined %s %s: %s", event.kind, event.event_id, poison)
    QuarantinedEvent.objects.create(
        event_id=event.event_id,
        subject=event.subject,
        stream=event.stream,
        writer=event.writer,
        seq=event.seq,
        kind=event.kind,
        schema=event.message.get("schema", ""),
        schema_version=event.schema_version,
        reason=poison.reason,
        detail=poison.detail,
        raw=dumps(event.message).decode(),
        stream_seq=event.stream_seq,
    )
    return Outcome.QUARANTINED


def _quarantine_raw(data: bytes, subject: str, stream_seq: int | None, poison: Poison) -> Outcome:
    """A message that could not even be read as an event: kept as bytes with what is known."""
    known = poison.known
    log.warning("quarantined a message on %s: %s", subject, poison)
    event_id = known.get("event_id")
    with transaction.atomic():
        if event_id and QuarantinedEvent.objects.filter(event_id=event_id).exists():
            return Outcome.DUPLICATE
        try:
            with transaction.atomic():
                QuarantinedEvent.objects.create(
                    event_id=event_id
                    if isinstance(event_id, str) and len(event_id) == 36
                    else None,
                    subject=subject[:200],
                    stream=str(known.get("stream") or "")[:80],
                    writer=str(known.get("writer") or "")[:40],
                    seq=known.get("seq") if isinstance(known.get("seq"), int) else None,
                    kind=str(known.get("kind") or "")[:60],
                    reason=poison.reason,
                    detail=poison.detail,
                    raw=data.decode("utf-8", errors="replace"),
                    stream_seq=stream_seq,
                )
        except (IntegrityError, ValueError):
            return Outcome.DUPLICATE
    return Outcome.QUARANTINED


def _receive_registry(
    message: RegistryMessage, data: bytes, subject: str, stream_seq: int | None
) -> Outcome:
    me = this_node()
    try:
        if message.schema == ANNOUNCE_SCHEMA:
            if not me.is_hub:
                return Outcome.IGNORED
            if do_apply_announcement(message):
                retry_parked(ParkReason.AWAITING_KEY)
        else:
            if me.is_hub:
                return Outcome.IGNORED
            if do_apply_registry(message):
                retry_parked(ParkReason.AWAITING_KEY)
    except Poison as poison:
        return _quarantine_raw(data, subject, stream_seq, poison)
    return Outcome.REGISTRY


def _from_parked(parked: ParkedEvent) -> IncomingEvent:
    event = parse_message(dumps(parked.message), parked.subject)
    assert isinstance(event, IncomingEvent)
    event.stream_seq = parked.stream_seq
    return event


def _apply_parked_successors(applied: IncomingEvent) -> None:
    """Apply parked events that were waiting for `applied`, one transaction each."""
    stream, writer, seq = applied.stream, applied.writer, applied.seq
    while True:
        with transaction.atomic():
            parked = (
                ParkedEvent.objects.select_for_update()
                .filter(stream=stream, writer=writer, seq=seq + 1, reason=ParkReason.GAP)
                .first()
            )
            if parked is None:
                return
            event = _from_parked(parked)
            parked.delete()
            if _process(event, parked.parked_at) != Outcome.APPLIED:
                return
        seq += 1


def retry_parked(reason: ParkReason | None = None) -> int:
    """Try parked events again (oldest position first); the number applied."""
    rows = ParkedEvent.objects.order_by("stream", "writer", "seq")
    if reason is not None:
        rows = rows.filter(reason=reason)
    applied = 0
    for parked_id in list(rows.values_list("pk", flat=True)):
        with transaction.atomic():
            parked = ParkedEvent.objects.select_for_update().filter(pk=parked_id).first()
            if parked is None:
                continue  # applied as the successor of an earlier one
            event = _from_parked(parked)
            parked.delete()
            outcome = _process(event, parked.parked_at)
        if outcome == Outcome.APPLIED:
            applied += 1
            _apply_parked_successors(event)
    return applied


def release_quarantined(row: QuarantinedEvent) -> Outcome:
    """Re-apply a quarantined event (after deploying the app that understands it)."""
    with transaction.atomic():
        row = QuarantinedEvent.objects.select_for_update().get(pk=row.pk)
        if row.released_at is not None:
            return Outcome.DUPLICATE
        data, subject, stream_seq = row.raw.encode(), row.subject, row.stream_seq
        row.delete()
        outcome = receive(data, subject, stream_seq)
        if outcome == Outcome.QUARANTINED:
            transaction.set_rollback(True)  # keep the original row and its reason
    return outcome
