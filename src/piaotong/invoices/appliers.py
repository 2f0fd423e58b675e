"""Red-letter (红字) and void (作废) events from the other party's node, and authority flags
(失控 / 异常) from the hub, applied here.

The counterparty's node writes its side of the red-letter workflow (request, answer, withdrawal,
expiry) and the seller's home node writes red flushes and voids; `redletter.apply_remote_event`
runs the same state changes as the local actions. Whose fact an event is depends on its payload
(a request is the initiator's, an answer the answering side's), so the side is a function of the
payload and the exchange checks the writer against it (ARCHITECTURE §5). Authority flags are
always authority facts: only the hub may write them (`invoices.authority`).

A node restored from an old backup replays its own confirmations through
`replay_own_red_letter_event` (registered with `register_own_replay`): the red invoice its
action issued with one comes back as its own next event, so none is issued on the replay.

Registered on import, from `InvoicesConfig.ready()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from piaotong.exchange.apply import (
    ApplyLater,
    ApplyRefused,
    register_applier,
    register_own_replay,
    stream_uid,
)
from piaotong.exchange.choices import FactSide, ParkReason, QuarantineReason
from piaotong.exchange.messages import IncomingEvent
from piaotong.invoices import authority, redletter
from piaotong.invoices.models import Invoice
from piaotong.lib.errors import RuleViolation


def _side_of(kind: str) -> Callable[[dict[str, Any]], FactSide]:
    def side(payload: dict[str, Any]) -> FactSide:
        return FactSide(redletter.writer_side(kind, payload).value)

    return side


def _check_stream(event: IncomingEvent) -> None:
    """The invoice the payload names must be the one whose stream carries the event: a writer
    may not state facts about another invoice under this one's history."""
    number = event.payload.get("blue_number") or event.payload.get("number")
    if not isinstance(number, str):
        raise ApplyRefused(QuarantineReason.MALFORMED, f"{event.kind} names no invoice number")
    held = Invoice.objects.filter(number=number).values_list("uid", flat=True).first()
    if held is None:
        raise ApplyLater(ParkReason.GAP, f"invoice {number} has not arrived here yet")
    if held != stream_uid(event.stream):
        raise ApplyRefused(
            QuarantineReason.CONFLICT, f"{event.kind} about {number} on another invoice's stream"
        )


def apply_red_letter_event(event: IncomingEvent) -> None:
    _apply_red_letter(event, redletter.apply_remote_event)


def replay_own_red_letter_event(event: IncomingEvent) -> None:
    """This node's own red-letter or void event, taken back after a restore: the same state
    change, but a confirmation issues no red invoice (`redletter.replay_own_event`)."""
    _apply_red_letter(event, redletter.replay_own_event)


def _apply_red_letter(
    event: IncomingEvent, function: Callable[[str, dict[str, Any]], object]
) -> None:
    _check_stream(event)
    try:
        function(event.kind, event.payload)
    except redletter.NotYetKnown as missing:
        raise ApplyLater(ParkReason.GAP, f"{missing} has not arrived here yet") from None
    except RuleViolation as violation:
        raise ApplyRefused(
            QuarantineReason.CONFLICT, f"{event.kind} does not fit here: {violation}"
        ) from None
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ApplyRefused(
            QuarantineReason.INVALID_CONTENT, f"unreadable {event.kind} payload: {exc!r}"
        ) from None


for _kind in sorted(redletter.HANDLED_EVENTS):
    register_applier(_kind, side=_side_of(_kind), version=1)(apply_red_letter_event)
register_own_replay(redletter.CONFIRMED)(replay_own_red_letter_event)


@register_applier(authority.SET_EVENT, side=FactSide.AUTHORITY, version=1)
@register_applier(authority.CLEARED_EVENT, side=FactSide.AUTHORITY, version=1)
def apply_authority_event(event: IncomingEvent) -> None:
    """A 失控 / 异常 flag set or cleared at the hub: the invoice here takes the hub's state."""
    _check_stream(event)
    invoice = Invoice.objects.get(uid=stream_uid(event.stream))
    try:
        authority.apply_received_flag(invoice, event.writer)
    except (KeyError, TypeError, ValueError) as exc:
        raise ApplyRefused(
            QuarantineReason.INVALID_CONTENT, f"unreadable {event.kind} payload: {exc!r}"
        ) from None
