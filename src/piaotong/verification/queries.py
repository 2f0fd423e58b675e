"""The two reads of every verification, prepared once per process.

A verification looks up one invoice by number and reads its lines. Through the ORM each of the
two queries spends ~0.35 ms compiling SQL and converting fifty columns, several times the
database's own work (measured in docs/verification.md). Here the ORM compiles each query once
(per database vendor); later calls run the SQL with new parameters and convert the values with
the same converters the ORM would use, so the objects are identical to the ORM's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine

DRAFT_STATUSES = (InvoiceStatus.DRAFT, InvoiceStatus.PENDING_REVIEW)
# What verification uses of an invoice: no encrypted contact columns, nothing else unused.
INVOICE_FIELDS = frozenset(
    {
        "id",
        "uid",
        "kind",
        "status",
        "number",
        "issue_date",
        "seller_id",
        "seller_name",
        "seller_tax_id",
        "buyer_id",
        "buyer_name",
        "buyer_tax_id",
        "total_amount",
        "total_tax",
        "total_with_tax",
        "remarks",
        "red_of_id",
        "authority_flag",
        "payload_hash",
    }
)
LINE_FIELDS = (
    "printed_name",
    "spec",
    "unit",
    "quantity",
    "unit_price",
    "amount",
    "tax_rate",
    "tax",
)

Converter = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Prepared:
    """Compiled SQL with placeholders and, per selected column, its converters."""

    sql: str
    converters: tuple[tuple[tuple[Converter, ...], Any], ...]

    def rows(self, params: Sequence[Any]) -> list[list[Any]]:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            fetched = cursor.fetchall()
        return [self._convert(row) for row in fetched]

    def _convert(self, row: Sequence[Any]) -> list[Any]:
        values = list(row)
        for position, (converters, expression) in enumerate(self.converters):
            for convert in converters:
                values[position] = convert(values[position], expression, connection)
        return values


def prepare(queryset: QuerySet[Any], expected_params: Sequence[Any]) -> Prepared:
    """Compile a values_list queryset; its parameters must be `expected_params`, so a change
    in how Django orders them cannot silently bind a value to the wrong placeholder."""
    compiler = queryset.query.get_compiler(connection=connection)
    sql, params = compiler.as_sql()
    if tuple(params) != tuple(expected_params):
        raise AssertionError(f"unexpected parameter order {params!r}")
    converters = []
    for expression, _sql, _alias in compiler.select:
        backend = connection.ops.get_db_converters(expression)
        field = expression.get_db_converters(connection)
        converters.append((tuple(backend + field), expression))
    return Prepared(sql, tuple(converters))


def _invoice_attnames() -> list[str]:
    return [f.attname for f in Invoice._meta.concrete_fields if f.attname in INVOICE_FIELDS]


@lru_cache(maxsize=4)
def _invoice_query(vendor: str) -> Prepared:
    marker = "00000000000000000000"
    queryset = (
        Invoice.objects.filter(number=marker)
        .exclude(status__in=DRAFT_STATUSES)
        .order_by()
        .values_list(*_invoice_attnames())[:1]
    )
    return prepare(queryset, (marker, *DRAFT_STATUSES))


def issued_invoice(number: str) -> Invoice | None:
    """The issued invoice with this number, with the columns verification uses (the others,
    e.g. the encrypted buyer contacts, are deferred and load only if touched)."""
    rows = _invoice_query(connection.vendor).rows((number, *DRAFT_STATUSES))
    if not rows:
        return None
    return Invoice.from_db(connection.alias, _invoice_attnames(), rows[0])


@dataclass(frozen=True)
class LineRow:
    printed_name: str
    spec: str
    unit: str
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal
    tax_rate: str
    tax: Decimal


@lru_cache(maxsize=4)
def _lines_query(vendor: str) -> Prepared:
    queryset = (
        InvoiceLine.objects.filter(invoice_id=0).order_by("position").values_list(*LINE_FIELDS)
    )
    return prepare(queryset, (0,))


def invoice_lines(invoice_id: int) -> list[LineRow]:
    return [LineRow(*row) for row in _lines_query(connection.vendor).rows((invoice_id,))]
