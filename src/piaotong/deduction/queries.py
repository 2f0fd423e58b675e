"""Read side of deduction: the buyer-side use of an invoice, the received-invoice list with its
state, its filters, and a period's selections.

The list is annotated with subqueries (booking time, active selection's period, status, purpose
and effective tax), so a page of any size costs one query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, Subquery

from piaotong.deduction.choices import BuyerUsage, DeductionState, PeriodStatus, Purpose
from piaotong.deduction.models import Booking, DeductionSelection
from piaotong.deduction.periods import end_day, first_day
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceQuerySet
from piaotong.ledger.models import LedgerEvent

# The buyer-side events about an invoice (deduction.actions appends them on the buyer's node).
_BOOKED, _SELECTED, _REVOKED, _CONFIRMED = (
    "InvoiceBooked",
    "DeductionSelected",
    "DeductionSelectionRevoked",
    "DeductionConfirmed",
)
_USAGE_RANK: list[str] = [
    BuyerUsage.NONE,
    BuyerUsage.BOOKED,
    BuyerUsage.SELECTED,
    BuyerUsage.CONFIRMED,
]


def buyer_usage(invoice: Invoice) -> str:
    """The strongest buyer-side use of the invoice on this node.

    "confirmed": selected in a confirmed period (用途确认); "selected": selected in a period not
    yet confirmed (勾选, including after statistics); "booked": booked (入账确认) and not
    selected; "": none of these. Not-deduct selections count too: they are uses all the same.

    On the buyer's node the deduction rows say it; on the seller's node and the hub the buyer's
    events received through the exchange do (`replicated_usage`); the stronger answer wins.
    """
    local = _local_usage(invoice)
    if local == BuyerUsage.CONFIRMED:
        return local
    return max(local, replicated_usage(invoice), key=_USAGE_RANK.index)


def _local_usage(invoice: Invoice) -> str:
    status = (
        DeductionSelection.objects.filter(invoice_id=invoice.pk, revoked_at=None)
        .values_list("deduction_period__status", flat=True)
        .first()
    )
    if status is not None:
        return BuyerUsage.CONFIRMED if status == PeriodStatus.CONFIRMED else BuyerUsage.SELECTED
    if Booking.objects.filter(invoice_id=invoice.pk).exists():
        return BuyerUsage.BOOKED
    return BuyerUsage.NONE


def replicated_usage(invoice: Invoice) -> str:
    """The buyer's use of the invoice as told by the buyer-side events other nodes wrote."""
    kinds = (
        LedgerEvent.objects.filter(
            stream=invoice.stream, kind__in=[_BOOKED, _SELECTED, _REVOKED, _CONFIRMED]
        )
        .exclude(writer=settings.PIAOTONG_NODE_ID)
        .order_by("writer", "seq")
        .values_list("kind", flat=True)
    )
    return usage_from_events(kinds)


def usage_from_events(kinds: Iterable[str]) -> str:
    """Fold the buyer's events about one invoice, oldest first, into its strongest use.

    >>> usage_from_events(["InvoiceBooked", "DeductionSelected", "DeductionSelectionRevoked"])
    'booked'
    >>> usage_from_events(["DeductionSelected", "DeductionConfirmed"])
    'confirmed'
    >>> usage_from_events([])
    ''
    """
    booked, selection = False, ""
    for kind in kinds:
        if kind == _BOOKED:
            booked = True
        elif kind == _SELECTED:
            selection = BuyerUsage.SELECTED
        elif kind == _REVOKED:
            selection = ""
        elif kind == _CONFIRMED:
            selection = BuyerUsage.CONFIRMED
    return str(selection or (BuyerUsage.BOOKED if booked else BuyerUsage.NONE))


def with_buyer_state(invoices: InvoiceQuerySet) -> InvoiceQuerySet:
    """Annotate booking and the active selection: booked_at, sel_period, sel_status,
    sel_purpose, sel_effective_tax (None when absent)."""
    active = DeductionSelection.objects.filter(invoice_id=OuterRef("pk"), revoked_at=None)
    return invoices.annotate(
        booked_at=Subquery(Booking.objects.filter(invoice_id=OuterRef("pk")).values("booked_at")),
        sel_period=Subquery(active.values("deduction_period__period")[:1]),
        sel_status=Subquery(active.values("deduction_period__status")[:1]),
        sel_purpose=Subquery(active.values("purpose")[:1]),
        sel_effective_tax=Subquery(active.values("effective_tax")[:1]),
    )


# Status filter values beyond the invoice statuses: the authority flags, and "changed" for any
# invoice that is no longer plainly normal (作废, 红冲, 异常, 失控).
CHANGED = "changed"


def filter_received(
    invoices: InvoiceQuerySet,
    *,
    period: str | None = None,
    seller: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    booked: str | None = None,
    state: str | None = None,
    number: str | None = None,
) -> InvoiceQuerySet:
    if period:
        invoices = invoices.filter(
            issue_date__gte=first_day(period), issue_date__lt=end_day(period)
        )
    if seller:
        invoices = invoices.filter(
            Q(seller_name__icontains=seller.strip()) | Q(seller_tax_id=seller.strip().upper())
        )
    if kind:
        invoices = invoices.filter(kind=kind)
    if status:
        invoices = _filter_status(invoices, status)
    if booked in {"yes", "no"}:
        is_booked = Exists(Booking.objects.filter(invoice_id=OuterRef("pk")))
        invoices = invoices.filter(is_booked if booked == "yes" else ~is_booked)
    if state:
        invoices = invoices.filter(_state_condition(state))
    if number:
        invoices = invoices.filter(number__startswith=number.strip())
    return invoices


def _filter_status(invoices: InvoiceQuerySet, status: str) -> InvoiceQuerySet:
    if status == CHANGED:
        return invoices.filter(~Q(status=InvoiceStatus.ISSUED) | ~Q(authority_flag=""))
    if status in {"abnormal", "out_of_control"}:
        return invoices.filter(authority_flag=status)
    return invoices.filter(status=status, authority_flag="")


def _state_condition(state: str) -> Q:
    active = DeductionSelection.objects.filter(invoice_id=OuterRef("pk"), revoked_at=None)
    conditions: dict[str, Any] = {
        DeductionState.UNSELECTED: ~Exists(active),
        DeductionState.SELECTED: Exists(active.filter(deduction_period__status=PeriodStatus.OPEN)),
        DeductionState.COUNTED: Exists(
            active.filter(deduction_period__status=PeriodStatus.COUNTED)
        ),
        DeductionState.CONFIRMED: Exists(
            active.filter(deduction_period__status=PeriodStatus.CONFIRMED)
        ),
        DeductionState.NOT_DEDUCT: Exists(active.filter(purpose=Purpose.NOT_DEDUCT)),
    }
    return Q(conditions[DeductionState(state)])


def is_changed(invoice: Invoice) -> bool:
    """Whether the invoice is no longer plainly normal: voided, red-flushed or flagged."""
    return invoice.status != InvoiceStatus.ISSUED or bool(invoice.authority_flag)
