"""The buyer's node rebuilds its own deduction rows from its own events (recovery after a restore).

A buyer's node restored from an old backup has lost the bookings (入账确认), selections (勾选),
revocations, statistics (申请统计 / 撤销统计) and confirmations (确认签名) it recorded after the
backup, while the hub holds the events those actions wrote. When recovery takes its own events
back (`exchange.recovery`), these functions write the rows again, as the actions wrote them:
every value comes from the event (times, who, face values, the period's uid), nothing is
decided anew, because the rules that allowed the fact then (an open period, an unflagged
invoice) need not hold at the moment of the replay. Events are replayed in the order they were
written; each one sets what its action set.

Events written before these values were part of the payload (earlier versions) are rebuilt as
closely as they allow: the event's own time for a missing time, `UNKNOWN_LABEL` for who, the
invoice's remaining face amount for a missing one, and the period's uid from its first
statistics event (a period row created here by an earlier replay takes that uid).

Registered on import, from `DeductionConfig.ready()`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.deduction.actions import (
    BOOKED_EVENT,
    CONFIRMED_EVENT,
    PERIOD_CONFIRMED_EVENT,
    REVOKED_EVENT,
    SELECTED_EVENT,
    STATISTICS_APPLIED_EVENT,
    STATISTICS_REVOKED_EVENT,
)
from piaotong.deduction.choices import PeriodStatus
from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import parse_period
from piaotong.exchange.apply import ApplyLater, ApplyRefused, register_own_replay, stream_uid
from piaotong.exchange.choices import ParkReason, QuarantineReason
from piaotong.exchange.messages import IncomingEvent
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.ledger.actions import record_audit
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.errors import RuleViolation

SYSTEM = Actor()
# Who, for an event of an earlier version that did not say.
UNKNOWN_LABEL = "(recovered)"
PERIOD_STREAM = "deduction-period:"


# --- reading an event --------------------------------------------------------------------------


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise ApplyRefused(QuarantineReason.MALFORMED, f"the payload has no {name!r}")
    return value


def _moment(event: IncomingEvent, name: str) -> datetime:
    """The time the action wrote under `name`, else (an earlier version) the event's time."""
    value = event.payload.get(name)
    if value is None:
        return event.occurred_at
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ApplyRefused(QuarantineReason.INVALID_CONTENT, f"{name} {value!r}") from None


def _label(event: IncomingEvent, name: str) -> str:
    return str(event.payload.get(name) or UNKNOWN_LABEL)[:150]


def _period(payload: dict[str, Any]) -> str:
    try:
        return parse_period(_text(payload, "period"))
    except RuleViolation:
        raise ApplyRefused(
            QuarantineReason.INVALID_CONTENT, f"period {payload.get('period')!r} is not YYYYMM"
        ) from None


def _uid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ApplyRefused(QuarantineReason.INVALID_CONTENT, f"period uid {value!r}") from None


def _invoice(event: IncomingEvent) -> Invoice:
    """The invoice of an invoice-stream event, whose buyer must be the event's buyer."""
    invoice = (
        Invoice.objects.select_for_update(of=("self",)).filter(uid=stream_uid(event.stream)).first()
    )
    if invoice is None:  # a replica that recovery brings among the other nodes' events
        raise ApplyLater(ParkReason.GAP, "the invoice has not arrived here yet")
    if invoice.buyer_id is None or invoice.buyer_tax_id != _text(event.payload, "buyer_tax_id"):
        raise ApplyRefused(
            QuarantineReason.CONFLICT, f"{event.kind} names another buyer than {invoice.number}"
        )
    return invoice


def _buyer(payload: dict[str, Any]) -> Organisation:
    buyer = Organisation.objects.filter(tax_id=_text(payload, "buyer_tax_id")).first()
    if buyer is None:
        raise ApplyRefused(QuarantineReason.CONFLICT, "the buyer is not registered here")
    return buyer


def _period_row(buyer_id: int, period: str, uid: uuid.UUID | None) -> DeductionPeriod:
    """The (buyer, period) row, locked, created as the action did on first use.

    A row that an earlier replay created without knowing the uid (an event of an earlier
    version) takes the uid the period's stream names; a row whose stream holds events already
    and names another uid is a contradiction.
    """
    row = (
        DeductionPeriod.objects.select_for_update().filter(buyer_id=buyer_id, period=period).first()
    )
    if row is None:
        return DeductionPeriod.objects.create(
            buyer_id=buyer_id, period=period, **({"uid": uid} if uid else {})
        )
    if uid is not None and row.uid != uid:
        if LedgerEvent.objects.filter(stream=row.stream).exists():
            raise ApplyRefused(
                QuarantineReason.CONFLICT,
                f"period {period} is {row.stream} here, the event names {uid}",
            )
        row.uid = uid
        row.save(update_fields=["uid"])
    return row


def _invoice_period(event: IncomingEvent, invoice: Invoice) -> DeductionPeriod:
    assert invoice.buyer_id is not None  # _invoice checked it
    return _period_row(
        invoice.buyer_id, _period(event.payload), _uid(event.payload.get("period_uid"))
    )


def _stream_period(event: IncomingEvent) -> DeductionPeriod:
    if not event.stream.startswith(PERIOD_STREAM):
        raise ApplyRefused(QuarantineReason.MALFORMED, f"{event.kind} on stream {event.stream!r}")
    uid = _uid(event.stream.removeprefix(PERIOD_STREAM))
    return _period_row(_buyer(event.payload).pk, _period(event.payload), uid)


def _audit(event: IncomingEvent, subject: str, buyer_id: int, what: dict[str, Any]) -> None:
    details = {"kind": event.kind, "event": str(event.event_id)} | what
    record_audit(SYSTEM, "deduction.recovered", subject, buyer_id, details)


# --- facts about an invoice --------------------------------------------------------------------


@register_own_replay(BOOKED_EVENT)
def replay_booking(event: IncomingEvent) -> None:
    invoice = _invoice(event)
    assert invoice.buyer_id is not None
    Booking.objects.create(
        invoice=invoice,
        buyer_id=invoice.buyer_id,
        booked_at=_moment(event, "booked_at"),
        booked_by_label=_label(event, "booked_by"),
    )
    _audit(event, invoice.stream, invoice.buyer_id, {"number": invoice.number})


@register_own_replay(SELECTED_EVENT)
def replay_selection(event: IncomingEvent) -> None:
    invoice = _invoice(event)
    period_row = _invoice_period(event, invoice)
    payload = event.payload
    face_amount = payload.get("face_amount")
    DeductionSelection.objects.create(
        invoice=invoice,
        deduction_period=period_row,
        purpose=_text(payload, "purpose"),
        reason=str(payload.get("reason") or ""),
        face_amount=Decimal(face_amount) if face_amount is not None else _remaining(invoice),
        face_tax=Decimal(_text(payload, "face_tax")),
        effective_tax=Decimal(_text(payload, "effective_tax")),
        selected_at=_moment(event, "selected_at"),
        selected_by_label=_label(event, "selected_by"),
    )
    _audit(event, invoice.stream, period_row.buyer_id, {"number": invoice.number})


def _remaining(invoice: Invoice) -> Decimal:
    """The invoice's amount less its red-letter reversals here (an earlier version's selection
    did not carry it; the action computed it the same way when it selected)."""
    reversed_amount = (
        Invoice.objects.filter(red_of=invoice)
        .exclude(status=InvoiceStatus.VOIDED)
        .aggregate(amount=Sum("total_amount"))["amount"]
    )
    return Decimal(invoice.total_amount) + Decimal(reversed_amount or 0)


@register_own_replay(REVOKED_EVENT)
def replay_revocation(event: IncomingEvent) -> None:
    invoice = _invoice(event)
    period_row = _invoice_period(event, invoice)
    revoked = DeductionSelection.objects.filter(
        invoice=invoice, deduction_period=period_row, revoked_at=None
    ).update(revoked_at=_moment(event, "revoked_at"), revoked_by_label=_label(event, "revoked_by"))
    if revoked != 1:
        raise ApplyRefused(
            QuarantineReason.CONFLICT, f"{invoice.number} is not selected in {period_row.period}"
        )
    _audit(event, invoice.stream, period_row.buyer_id, {"number": invoice.number})


@register_own_replay(CONFIRMED_EVENT)
def replay_invoice_confirmation(event: IncomingEvent) -> None:
    """One invoice's confirmed use; the period is confirmed by its own event
    (`DeductionPeriodConfirmed`), or, for an earlier version that wrote none, by this one."""
    invoice = _invoice(event)
    period_row = _invoice_period(event, invoice)
    if not period_row.is_confirmed:
        _confirm(period_row, _moment(event, "confirmed_at"), _label(event, "confirmed_by"))
    _audit(event, invoice.stream, period_row.buyer_id, {"number": invoice.number})


def _confirm(period_row: DeductionPeriod, at: datetime, by: str) -> None:
    period_row.status, period_row.confirmed_at, period_row.confirmed_by_label = (
        PeriodStatus.CONFIRMED,
        at,
        by,
    )
    period_row.save(update_fields=["status", "confirmed_at", "confirmed_by_label"])


# --- facts about a period ----------------------------------------------------------------------


@register_own_replay(STATISTICS_APPLIED_EVENT)
def replay_statistics_applied(event: IncomingEvent) -> None:
    period_row = _stream_period(event)
    statistics = event.payload.get("statistics")
    if not isinstance(statistics, dict):
        raise ApplyRefused(QuarantineReason.MALFORMED, "the payload has no statistics")
    period_row.statistics, period_row.status = statistics, PeriodStatus.COUNTED
    period_row.counted_at = _moment(event, "counted_at")
    period_row.save(update_fields=["statistics", "status", "counted_at"])
    _audit(event, period_row.stream, period_row.buyer_id, {"period": period_row.period})


@register_own_replay(STATISTICS_REVOKED_EVENT)
def replay_statistics_revoked(event: IncomingEvent) -> None:
    period_row = _stream_period(event)
    period_row.status, period_row.counted_at = PeriodStatus.OPEN, None
    period_row.save(update_fields=["status", "counted_at"])
    _audit(event, period_row.stream, period_row.buyer_id, {"period": period_row.period})


@register_own_replay(PERIOD_CONFIRMED_EVENT)
def replay_period_confirmation(event: IncomingEvent) -> None:
    period_row = _stream_period(event)
    statistics = event.payload.get("statistics")
    if isinstance(statistics, dict):
        period_row.statistics = statistics
    period_row.closed_by_return = bool(event.payload.get("closed_by_return"))
    period_row.save(update_fields=["statistics", "closed_by_return"])
    _confirm(period_row, _moment(event, "confirmed_at"), _label(event, "confirmed_by"))
    _audit(event, period_row.stream, period_row.buyer_id, {"period": period_row.period})
