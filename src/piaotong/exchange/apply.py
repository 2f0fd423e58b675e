"""The registry of apply-functions (应用函数): how a received event of each kind changes this node.

Every app that publishes an event kind registers, on every node, the function that applies it
when it arrives from another node, with the side of the fact (which decides its rightful
writer) and the newest payload version it reads. Register in the app's `AppConfig.ready()`::

    from piaotong.exchange.apply import register_applier
    from piaotong.exchange.choices import FactSide

    @register_applier("InvoiceBooked", side=FactSide.BUYER, version=1)
    def apply_invoice_booked(event: IncomingEvent) -> None:
        invoice = Invoice.objects.select_for_update().get(uid=stream_uid(event.stream))
        ...  # the same rows the buyer's node wrote, through your app's action

The consumer calls the function inside its transaction, after it checked the envelope, the
writer, the hash, the chain link (prev_hash) and the order (seq), and after it stored the event
in the local ledger under its writer. The function must be idempotent on its own keys and must
not commit. It raises `ApplyRefused(reason, detail)` for a poison event (the transaction is
rolled back to before the event and the event is quarantined) or `ApplyLater(reason, detail)`
when it cannot apply yet (the event is parked until the registry or the predecessor arrives).

Older payload versions are upgraded before the function sees them: pass
`upgraders={1: v1_to_v2}` with `version=2`; each upgrader takes a payload of version n and
returns one of version n+1. A payload version newer than `version` is quarantined.

The side may depend on the payload: a red-letter request is the seller's fact when the seller
filed it and the buyer's when the buyer did. Pass a function of the (upgraded) payload::

    @register_applier("RedLetterRequested", side=lambda p: FactSide(p["initiator_side"]))

An event that had to wait for another writer's event of the same stream (a buyer's answer that
reached the hub before the seller's request) is parked with `ParkReason.GAP`; whenever an event
of that stream applies, parked events of the stream's other writers are tried again after the
commit (`wake_parked`).

A node restored from an old backup takes back from the hub the events it wrote itself
(`recovery`). For those it is the writer, not a receiver: an app whose action keeps rows on the
writer's node that a receiver's apply-function does not write (the buyer's deduction rows, the
seller's answer to a red-letter request) registers how to rebuild them from its own event::

    @register_own_replay("InvoiceBooked")
    def replay_booking(event: IncomingEvent) -> None:
        ...  # the rows do_book_invoice wrote, from the event alone

Recovery then runs that function instead of the apply-function (same rules: inside its
transaction, after every check, must not commit; `ApplyLater` or `ApplyRefused` when it cannot).
A kind without one is replayed through its apply-function.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import transaction

from piaotong.exchange.choices import FactSide, ParkReason, QuarantineReason
from piaotong.exchange.messages import IncomingEvent, Poison

ApplyFunction = Callable[[IncomingEvent], None]
Upgrader = Callable[[dict[str, Any]], dict[str, Any]]
SideFunction = Callable[[dict[str, Any]], FactSide]


class ApplyRefused(Poison):
    """Raised by an apply-function: this event is poison (quarantined with the reason)."""


class ApplyLater(Exception):
    """Raised by an apply-function: this event cannot apply yet (parked with the reason)."""

    def __init__(self, reason: ParkReason, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True)
class Applier:
    """What a node does with received events of one kind.

    `side_rule` is the side of every event of the kind, or a function of the payload giving it.
    """

    kind: str
    side_rule: FactSide | SideFunction
    version: int
    function: ApplyFunction
    upgraders: dict[int, Upgrader] = field(default_factory=dict)

    def side_for(self, payload: dict[str, Any]) -> FactSide:
        """The side of this event's fact (decides its rightful writer), or Poison."""
        if isinstance(self.side_rule, FactSide):
            return self.side_rule
        try:
            return FactSide(self.side_rule(payload))
        except (KeyError, TypeError, ValueError) as exc:
            raise Poison(
                QuarantineReason.MALFORMED, f"{self.kind}: cannot tell whose fact it is ({exc!r})"
            ) from None

    @property
    def side(self) -> FactSide:
        """The fixed side; for a payload-dependent kind use `side_for` (or `applier_for`)."""
        if not isinstance(self.side_rule, FactSide):
            raise TypeError(f"the side of {self.kind} depends on the payload: use side_for()")
        return self.side_rule

    def upgrade(self, payload: dict[str, Any], from_version: int) -> dict[str, Any]:
        """The payload brought from `from_version` to `self.version`, or Poison."""
        if from_version > self.version:
            raise Poison(
                QuarantineReason.NEWER_SCHEMA,
                f"{self.kind} version {from_version}; this node reads {self.kind} up to version "
                f"{self.version}. Upgrade this node, then release the event from quarantine.",
            )
        for version in range(from_version, self.version):
            upgrader = self.upgraders.get(version)
            if upgrader is None:
                raise Poison(
                    QuarantineReason.UNKNOWN_SCHEMA,
                    f"no upgrade of {self.kind} from version {version} to {version + 1}",
                )
            payload = upgrader(payload)
        return payload

    def apply(self, event: IncomingEvent) -> None:
        """Run the apply-function; after the commit, retry what waited for this event."""
        self._run(self.function, event)

    def replay_own(self, event: IncomingEvent) -> None:
        """Rebuild, on the writer's node, what its own event of this kind stands for: the
        kind's own-replay function if registered (`register_own_replay`), else the
        apply-function; after the commit, retry what waited for this event."""
        self._run(_OWN_REPLAYS.get(self.kind, self.function), event)

    def _run(self, function: ApplyFunction, event: IncomingEvent) -> None:
        function(event)
        if _maybe_others_parked(event.stream, event.writer) and _others_parked(
            event.stream, event.writer
        ):
            transaction.on_commit(partial(wake_parked, event.stream, event.writer))


@dataclass
class ReceivedApplier:
    """An applier bound to one received event: `side` is known once `upgrade` has read the
    payload. `applier_for` hands one out per event, so nothing is shared between events."""

    applier: Applier
    payload: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return self.applier.kind

    @property
    def version(self) -> int:
        return self.applier.version

    def upgrade(self, payload: dict[str, Any], from_version: int) -> dict[str, Any]:
        self.payload = self.applier.upgrade(payload, from_version)
        return self.payload

    @property
    def side(self) -> FactSide:
        if self.payload is None and not isinstance(self.applier.side_rule, FactSide):
            raise TypeError(f"the side of {self.kind} is known after upgrade(payload)")
        return self.applier.side_for(self.payload or {})

    def side_for(self, payload: dict[str, Any]) -> FactSide:
        return self.applier.side_for(payload)

    def apply(self, event: IncomingEvent) -> None:
        self.applier.apply(event)

    def replay_own(self, event: IncomingEvent) -> None:
        self.applier.replay_own(event)


_APPLIERS: dict[str, Applier] = {}
_OWN_REPLAYS: dict[str, ApplyFunction] = {}


def register_applier(
    kind: str,
    *,
    side: FactSide | SideFunction,
    version: int = 1,
    upgraders: dict[int, Upgrader] | None = None,
) -> Callable[[ApplyFunction], ApplyFunction]:
    """Decorator: `function` applies received events of `kind` (one function per kind).

    `side` is a `FactSide`, or a function of the payload returning one.
    """
    rule: FactSide | SideFunction = FactSide(side) if isinstance(side, str) else side

    def register(function: ApplyFunction) -> ApplyFunction:
        existing = _APPLIERS.get(kind)
        if existing is not None and existing.function is not function:
            raise RuntimeError(f"{kind} already has an apply-function: {existing.function!r}")
        _APPLIERS[kind] = Applier(kind, rule, version, function, dict(upgraders or {}))
        return function

    return register


def register_own_replay(kind: str) -> Callable[[ApplyFunction], ApplyFunction]:
    """Decorator: `function` rebuilds, on the node that wrote an event of `kind`, the rows its
    action wrote with it, when recovery after a restore takes the event back from the hub.

    The kind must have an apply-function too (it decides the rightful writer and upgrades the
    payload); the replay function sees the upgraded payload.
    """

    def register(function: ApplyFunction) -> ApplyFunction:
        existing = _OWN_REPLAYS.get(kind)
        if existing is not None and existing is not function:
            raise RuntimeError(f"{kind} already has an own-replay function: {existing!r}")
        _OWN_REPLAYS[kind] = function
        return function

    return register


def own_replay_kinds() -> list[str]:
    return sorted(_OWN_REPLAYS)


def unregister_applier(kind: str) -> None:
    """For tests that register a throwaway kind."""
    _APPLIERS.pop(kind, None)
    _BULK.pop(kind, None)
    _OWN_REPLAYS.pop(kind, None)


@dataclass(frozen=True)
class BulkApplier:
    """How a consumer's batch applies the first events of new streams of one kind many at a
    time (`inbox.receive_batch`), besides the kind's apply-function.

    `prepare(event)` makes every check the apply-function makes and returns what to write, or
    None to leave the event to the apply-function (anything unusual); it writes nothing and
    raises Poison or ApplyLater as the apply-function would. `store(prepared)` writes many at
    once, exactly the rows the apply-function would have written one by one. The batch checks
    the envelope, writer, hash and position as for any event; if storing fails, every event of
    the group goes through the apply-function instead.

    `ahead(events)`, if given, is called once per batch with the events of this kind that may
    take the lane, before any of them is prepared: it may start work that `prepare` will need
    (signature checks on a worker thread, `lib.signing.check_ahead`); it writes nothing and
    refuses nothing (`prepare` still makes every check).
    """

    prepare: Callable[[IncomingEvent], Any]
    store: Callable[[list[Any]], None]
    ahead: Callable[[list[IncomingEvent]], None] | None = None


_BULK: dict[str, BulkApplier] = {}


def register_bulk(
    kind: str,
    prepare: Callable[[IncomingEvent], Any],
    store: Callable[[list[Any]], None],
    ahead: Callable[[list[IncomingEvent]], None] | None = None,
) -> None:
    """Register the many-at-a-time form of `kind`'s apply-function (see `BulkApplier`)."""
    _BULK[kind] = BulkApplier(prepare, store, ahead)


def bulk_applier_for(kind: str) -> BulkApplier | None:
    return _BULK.get(kind)


def applier_for(kind: str) -> ReceivedApplier | None:
    """The applier of `kind`, bound to one received event (see `ReceivedApplier`)."""
    applier = _APPLIERS.get(kind)
    return None if applier is None else ReceivedApplier(applier)


def registered_kinds() -> list[str]:
    return sorted(_APPLIERS)


# The (stream, writer) pairs with parked events, as a consumer's batch knows them (read at its
# start, kept up to date as its events park): a stream none of whose other writers is in it
# needs no query. None outside a batch.
_KNOWN_PARKED: ContextVar[set[tuple[str, str]] | None] = ContextVar(
    "exchange_known_parked", default=None
)


@contextmanager
def known_parked(pairs: set[tuple[str, str]]) -> Iterator[None]:
    """Within the block, `pairs` (kept up to date by the caller) are all parked pairs of the
    streams the block applies events to."""
    token = _KNOWN_PARKED.set(pairs)
    try:
        yield
    finally:
        _KNOWN_PARKED.reset(token)


def _maybe_others_parked(stream: str, writer: str) -> bool:
    pairs = _KNOWN_PARKED.get()
    return pairs is None or any(s == stream and w != writer for s, w in pairs)


def _others_parked(stream: str, writer: str) -> bool:
    from piaotong.exchange.models import ParkedEvent

    return (
        ParkedEvent.objects.filter(stream=stream, reason=ParkReason.GAP)
        .exclude(writer=writer)
        .exists()
    )


def wake_parked(stream: str, writer: str) -> int:
    """Retry the parked events of `stream` written by other writers than `writer` (each in
    its own transaction; one that still cannot apply keeps its parked row); the number applied.
    """
    from piaotong.exchange.inbox import Outcome, receive
    from piaotong.exchange.messages import dumps
    from piaotong.exchange.models import ParkedEvent

    waiting = (
        ParkedEvent.objects.filter(stream=stream, reason=ParkReason.GAP)
        .exclude(writer=writer)
        .order_by("writer", "seq")
        .values_list("pk", flat=True)
    )
    applied = 0
    for parked_id in list(waiting):
        with transaction.atomic():
            parked = ParkedEvent.objects.select_for_update().filter(pk=parked_id).first()
            if parked is None:
                continue  # applied meanwhile, as the successor of an earlier one
            data, subject, stream_seq = dumps(parked.message), parked.subject, parked.stream_seq
            parked.delete()
            outcome = receive(data, subject, stream_seq)
            if outcome == Outcome.APPLIED:
                applied += 1
            elif outcome == Outcome.PARKED:
                transaction.set_rollback(True)  # still waiting: keep the row as it was
    return applied


def stream_uid(stream: str) -> uuid.UUID:
    """The invoice uid of a ledger stream `invoice:<uid>`, or ApplyRefused.

    >>> stream_uid("invoice:4b0c5b56-9f8b-4a47-9d7f-6e3c8a3c1c11").version
    4
    """
    prefix, _, raw = stream.partition(":")
    try:
        if prefix != "invoice":
            raise ValueError(stream)
        return uuid.UUID(raw)
    except ValueError:
        raise ApplyRefused(
            QuarantineReason.INVALID_CONTENT, f"stream {stream!r} is not invoice:<uid>"
        ) from None
