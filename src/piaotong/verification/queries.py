"""The read of every verification, prepared once per process.

A verification looks up one invoice by number with its lines. Through the ORM the two queries
spent ~0.35 ms each compiling SQL and converting fifty columns, several times the database's own
work (measured in docs/verification.md). Here the ORM compiles the query once (per database
vendor): the invoice joined to its lines, one row per line, so a check reads in one statement
(one round trip on PostgreSQL). Later calls run the SQL with new parameters and convert the
values with the same converters the ORM would use, so the objects are identical to the ORM's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import QuerySet

from piaotong.fastsql import Rows
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice

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

_AMOUNT = LINE_FIELDS.index("amount")

Converter = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class Prepared:
    """Compiled SQL with placeholders and, per selected column, its converters."""

    sql: str
    converters: tuple[tuple[tuple[Converter, ...], Any], ...]

    def raw_rows(self, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The rows as the driver returns them (`fastsql.Rows`: no Django cursor wrapper)."""
        return Rows(self.sql, params).all()

    def rows(self, params: Sequence[Any]) -> list[list[Any]]:
        return [self.convert(row) for row in self.raw_rows(params)]

    def convert(self, row: Sequence[Any], start: int = 0, stop: int | None = None) -> list[Any]:
        """The values of columns `start` to `stop` of `row`, converted as the ORM would."""
        values = list(row[start:stop])
        for position, (converters, expression) in enumerate(self.converters[start:stop]):
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


@lru_cache(maxsize=1)
def _invoice_attnames() -> list[str]:
    return [f.attname for f in Invoice._meta.concrete_fields if f.attname in INVOICE_FIELDS]


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


@dataclass(frozen=True)
class Found:
    """An issued invoice, with the columns verification uses (the others, e.g. the encrypted
    buyer contacts, are deferred and load only if touched), and its lines in order."""

    invoice: Invoice
    lines: tuple[LineRow, ...]


@lru_cache(maxsize=4)
def _found_query(vendor: str) -> Prepared:
    marker = "00000000000000000000"
    queryset = (
        Invoice.objects.filter(number=marker)
        .exclude(status__in=DRAFT_STATUSES)
        .order_by("lines__position")
        .values_list(*_invoice_attnames(), *(f"lines__{name}" for name in LINE_FIELDS))
    )
    return prepare(queryset, (marker, *DRAFT_STATUSES))


def issued_invoice(number: str) -> Found | None:
    """The issued invoice with this number and its lines, read in one statement (a left join:
    an invoice without lines comes back with none)."""
    db = connections[DEFAULT_DB_ALIAS]
    query = _found_query(db.vendor)
    rows = query.raw_rows((number, *DRAFT_STATUSES))
    if not rows:
        return None
    attnames = _invoice_attnames()
    width = len(attnames)
    # The invoice's columns repeat on every line's row: converted once.
    invoice = Invoice.from_db(db.alias, attnames, query.convert(rows[0], 0, width))
    # A line's amount is never null: a null one is the left join's empty side.
    lines = tuple(
        LineRow(*query.convert(row, width)) for row in rows if row[width + _AMOUNT] is not None
    )
    return Found(invoice, lines)
