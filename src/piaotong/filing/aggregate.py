"""The database side of the return: the facts it is computed from, and the invoices behind
every number (drill-down).

Each part of the facts is one GROUP BY query that the database answers by itself, so the cost
does not grow in Python with the number of invoices: output (lines of the seller's counted
invoices by kind and rate), input (confirmed deductions by kind), transfer out (one aggregate),
credit brought forward (one row). Counted invoices are the issued ones, reversed or not; drafts
and voided invoices are left out. Red-letter invoices count in the period they were issued in,
with their negative amounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Least

from piaotong.accounts.models import Organisation
from piaotong.deduction.choices import PeriodStatus, Purpose
from piaotong.deduction.models import DeductionSelection
from piaotong.filing.choices import DrillPart, ReturnStatus
from piaotong.filing.compute import (
    GENERAL_RATES,
    SIMPLIFIED_RATES,
    SMALL_SCALE,
    ZERO,
    InputGroup,
    OutputGroup,
    ReturnFacts,
)
from piaotong.filing.models import VatReturn
from piaotong.filing.periods import TaxPeriod
from piaotong.invoices.choices import SPECIAL_KINDS, InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine

COUNTED_STATUSES = (
    InvoiceStatus.ISSUED,
    InvoiceStatus.PARTIALLY_RED_FLUSHED,
    InvoiceStatus.FULLY_RED_FLUSHED,
)


def _in_period(period: TaxPeriod, prefix: str = "") -> Q:
    return Q(**{f"{prefix}issue_date__gte": period.start, f"{prefix}issue_date__lt": period.end})


def output_groups(organisation: Organisation, period: TaxPeriod) -> tuple[OutputGroup, ...]:
    rows = (
        InvoiceLine.objects.filter(
            _in_period(period, "invoice__"),
            invoice__seller=organisation,
            invoice__status__in=COUNTED_STATUSES,
        )
        .values("invoice__kind", "tax_rate")
        .annotate(amount=Sum("amount"), tax=Sum("tax"), lines=Count("id"))
        .order_by()
    )
    merged: dict[tuple[bool, str], list[Decimal]] = {}
    for row in rows:
        key = (row["invoice__kind"] in SPECIAL_KINDS, row["tax_rate"])
        sums = merged.setdefault(key, [ZERO, ZERO, Decimal(0)])
        sums[0] += row["amount"]
        sums[1] += row["tax"]
        sums[2] += row["lines"]
    return tuple(
        OutputGroup(special, rate, amount, tax, int(lines))
        for (special, rate), (amount, tax, lines) in sorted(merged.items(), reverse=True)
    )


def _confirmed_deductions(
    organisation: Organisation, period: TaxPeriod
) -> QuerySet[DeductionSelection]:
    return DeductionSelection.objects.filter(
        deduction_period__buyer=organisation,
        deduction_period__period__in=period.month_codes,
        deduction_period__status=PeriodStatus.CONFIRMED,
        revoked_at=None,
        purpose=Purpose.DEDUCT,
    )


def input_groups(organisation: Organisation, period: TaxPeriod) -> tuple[InputGroup, ...]:
    rows = (
        _confirmed_deductions(organisation, period)
        .values("invoice__kind")
        .annotate(
            invoices=Count("id"),
            amount=Sum("face_amount"),
            face=Sum("face_tax"),
            effective=Sum("effective_tax"),
        )
        .order_by("invoice__kind")
    )
    return tuple(
        InputGroup(r["invoice__kind"], r["invoices"], r["amount"], r["face"], r["effective"])
        for r in rows
    )


def _transfer_out_invoices(organisation: Organisation, period: TaxPeriod) -> QuerySet[Invoice]:
    """Red-letter invoices received in the period against an invoice whose deduction was
    selected before the red invoice was issued and is confirmed, with the tax deducted."""
    deducted = DeductionSelection.objects.filter(
        invoice_id=OuterRef("red_of_id"),
        revoked_at=None,
        purpose=Purpose.DEDUCT,
        deduction_period__status=PeriodStatus.CONFIRMED,
        selected_at__lt=OuterRef("issued_at"),
    )
    return (
        Invoice.objects.filter(
            _in_period(period),
            buyer=organisation,
            red_of__isnull=False,
            status__in=COUNTED_STATUSES,
        )
        .annotate(deducted_tax=Subquery(deducted.values("effective_tax")[:1]))
        .filter(deducted_tax__isnull=False)
    )


def transfer_out(organisation: Organisation, period: TaxPeriod) -> Decimal:
    """Each red invoice transfers out its tax, at most the tax deducted on its blue invoice."""
    total = _transfer_out_invoices(organisation, period).aggregate(
        tax=Sum(Least(-F("total_tax"), F("deducted_tax")))
    )["tax"]
    return (total or ZERO).quantize(Decimal("0.01"))


def in_force(organisation: Organisation, period_code: str) -> VatReturn | None:
    return VatReturn.objects.filter(
        organisation=organisation, period=period_code, status=ReturnStatus.SUBMITTED
    ).first()


def credit_brought_forward(organisation: Organisation, period: TaxPeriod) -> Decimal:
    previous = in_force(organisation, period.previous().code)
    return previous.credit_carried_forward if previous else ZERO


def gather_facts(organisation: Organisation, period: TaxPeriod) -> ReturnFacts:
    """The facts of a return, in at most four queries."""
    kind = organisation.taxpayer_kind
    if kind == SMALL_SCALE:
        return ReturnFacts(period.code, kind, period.months, output_groups(organisation, period))
    return ReturnFacts(
        period.code,
        kind,
        period.months,
        output_groups(organisation, period),
        input_groups(organisation, period),
        transfer_out(organisation, period),
        credit_brought_forward(organisation, period),
    )


def invoice_counts(organisation: Organisation, period: TaxPeriod) -> dict[str, int]:
    """Issued invoices of the period: blue, red, and voided (not counted); one query."""
    row = Invoice.objects.filter(_in_period(period), seller=organisation).aggregate(
        blue=Count("pk", filter=Q(status__in=COUNTED_STATUSES, red_of__isnull=True)),
        red=Count("pk", filter=Q(status__in=COUNTED_STATUSES, red_of__isnull=False)),
        voided=Count("pk", filter=Q(status=InvoiceStatus.VOIDED)),
    )
    return {name: int(value or 0) for name, value in row.items()}


# --- Drill-down ------------------------------------------------------------------------------

RATE_SETS = {"general": GENERAL_RATES, "simplified": SIMPLIFIED_RATES}


def drill_down(
    organisation: Organisation, period: TaxPeriod, part: str, filters: Mapping[str, str]
) -> QuerySet[Invoice]:
    """The invoices behind a number: `part` is a DrillPart; `filters` may hold `rate` (one rate
    key), `rates` ("general" or "simplified") and `special` ("1" special invoices, "0" others).
    Ordered by issue date and number, so pages and exports are stable."""
    invoices: QuerySet[Invoice]
    if part == DrillPart.INPUT:
        invoices = Invoice.objects.filter(
            Exists(_confirmed_deductions(organisation, period).filter(invoice_id=OuterRef("pk")))
        ).annotate(
            effective_tax=Subquery(
                _confirmed_deductions(organisation, period)
                .filter(invoice_id=OuterRef("pk"))
                .values("effective_tax")[:1]
            )
        )
    elif part == DrillPart.TRANSFER_OUT:
        invoices = _transfer_out_invoices(organisation, period)
    elif part == DrillPart.VOIDED:
        invoices = Invoice.objects.filter(
            _in_period(period), seller=organisation, status=InvoiceStatus.VOIDED
        )
    else:
        invoices = _output_invoices(organisation, period, filters)
    return invoices.order_by("issue_date", "number", "id")


def _output_invoices(
    organisation: Organisation, period: TaxPeriod, filters: Mapping[str, str]
) -> QuerySet[Invoice]:
    invoices = Invoice.objects.filter(
        _in_period(period), seller=organisation, status__in=COUNTED_STATUSES
    )
    rates = RATE_SETS.get(filters.get("rates", ""))
    if filters.get("rate"):
        rates = frozenset({filters["rate"]})
    if rates is not None:
        invoices = invoices.filter(
            Exists(InvoiceLine.objects.filter(invoice_id=OuterRef("pk"), tax_rate__in=rates))
        )
    if filters.get("special") == "1":
        invoices = invoices.filter(kind__in=SPECIAL_KINDS)
    elif filters.get("special") == "0":
        invoices = invoices.exclude(kind__in=SPECIAL_KINDS)
    return invoices
