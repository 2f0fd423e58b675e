"""Buyer-side deduction facts from the buyer's node, received by the seller's node and the hub.

The buyer's node writes booking (入账确认), selection (勾选), its revocation and the confirmed use
(用途确认) as events on the invoice's stream, and statistics (申请统计 / 撤销统计) and the
period's confirmation (确认签名) on the period's stream (sent to the hub only). Another node does
not keep a second set of deduction rows for a buyer it does not serve: the received events
themselves, stored in its ledger by the exchange, are the record, and `queries.buyer_usage`
reads them (`replicated_usage`). What an apply-function adds is the check that the event fits
(the invoice is here, the buyer is the invoice's buyer) and an audit entry, so the seller's
auditors see when they learned of the use.

The buyer's node itself, taking its own events back after a restore, rebuilds its rows with
`deduction.replay` instead. Registered on import, from `DeductionConfig.ready()`.
"""

from __future__ import annotations

from typing import Any

from piaotong.accounts.access import Actor
from piaotong.deduction.actions import (
    BOOKED_EVENT,
    CONFIRMED_EVENT,
    PERIOD_CONFIRMED_EVENT,
    REVOKED_EVENT,
    SELECTED_EVENT,
    STATISTICS_APPLIED_EVENT,
    STATISTICS_REVOKED_EVENT,
)
from piaotong.deduction.periods import parse_period
from piaotong.exchange.apply import ApplyLater, ApplyRefused, register_applier, stream_uid
from piaotong.exchange.choices import FactSide, ParkReason, QuarantineReason
from piaotong.exchange.messages import IncomingEvent
from piaotong.invoices.models import Invoice
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolation

INVOICE_FACTS = (BOOKED_EVENT, SELECTED_EVENT, REVOKED_EVENT, CONFIRMED_EVENT)
PERIOD_FACTS = (STATISTICS_APPLIED_EVENT, STATISTICS_REVOKED_EVENT, PERIOD_CONFIRMED_EVENT)
SYSTEM = Actor()


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise ApplyRefused(QuarantineReason.MALFORMED, f"the payload has no {name!r}")
    return value


def _period(payload: dict[str, Any]) -> str:
    try:
        return parse_period(_text(payload, "period"))
    except RuleViolation:
        raise ApplyRefused(
            QuarantineReason.INVALID_CONTENT, f"period {payload.get('period')!r} is not YYYYMM"
        ) from None


def apply_invoice_fact(event: IncomingEvent) -> None:
    """A buyer's use of an invoice: it must be this invoice's buyer speaking."""
    buyer_tax_id = _text(event.payload, "buyer_tax_id")
    if event.kind != BOOKED_EVENT:
        _period(event.payload)
    invoice = (
        Invoice.objects.filter(uid=stream_uid(event.stream))
        .only("pk", "number", "buyer_tax_id", "seller_id")
        .first()
    )
    if invoice is None:
        raise ApplyLater(ParkReason.GAP, "the invoice has not arrived here yet")
    if invoice.buyer_tax_id != buyer_tax_id:
        raise ApplyRefused(
            QuarantineReason.CONFLICT,
            f"{event.kind} by {buyer_tax_id}, but {invoice.number} was issued to "
            f"{invoice.buyer_tax_id or 'a natural person'}",
        )
    details = {"number": invoice.number, "kind": event.kind, "writer": event.writer}
    record_audit(SYSTEM, "purchase.use_received", invoice.stream, invoice.seller_id, details)


def apply_period_fact(event: IncomingEvent) -> None:
    """Statistics of a buyer's period (the hub keeps them in its ledger)."""
    if not event.stream.startswith("deduction-period:"):
        raise ApplyRefused(QuarantineReason.MALFORMED, f"{event.kind} on stream {event.stream!r}")
    details = {
        "buyer_tax_id": _text(event.payload, "buyer_tax_id"),
        "period": _period(event.payload),
        "kind": event.kind,
        "writer": event.writer,
    }
    record_audit(SYSTEM, "deduction.period_received", event.stream, None, details)


for _kind in INVOICE_FACTS:
    register_applier(_kind, side=FactSide.BUYER, version=1)(apply_invoice_fact)
for _kind in PERIOD_FACTS:
    register_applier(_kind, side=FactSide.BUYER, version=1)(apply_period_fact)
