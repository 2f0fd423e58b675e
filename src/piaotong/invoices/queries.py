"""List filters shared by the invoice list page and the list endpoint."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db.models import Q

from piaotong.invoices.models import InvoiceQuerySet


def filter_invoices(
    invoices: InvoiceQuerySet,
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    status: str | None = None,
    kind: str | None = None,
    buyer: str | None = None,
    amount_min: Decimal | None = None,
    amount_max: Decimal | None = None,
    number: str | None = None,
) -> InvoiceQuerySet:
    if date_from:
        invoices = invoices.filter(issue_date__gte=date_from)
    if date_to:
        invoices = invoices.filter(issue_date__lte=date_to)
    if status:
        invoices = invoices.filter(status=status)
    if kind:
        invoices = invoices.filter(kind=kind)
    if buyer:
        invoices = invoices.filter(
            Q(buyer_name__icontains=buyer) | Q(buyer_tax_id=buyer.strip().upper())
        )
    if amount_min is not None:
        invoices = invoices.filter(total_with_tax__gte=amount_min)
    if amount_max is not None:
        invoices = invoices.filter(total_with_tax__lte=amount_max)
    if number:
        invoices = invoices.filter(number__startswith=number.strip())
    return invoices
