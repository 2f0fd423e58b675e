"""Excel export of invoices (发票导出): sheet "发票" has one row per invoice, sheet "明细" one
row per line (明细行).

The workbook is written in xlsxwriter's constant_memory mode, row by row from `.values()`
iterators, so memory stays flat however many invoices are exported (the budget is 500 MB at
1,000,000 rows). Lines are read in a second pass, one streaming query over the lines of the same
invoices (a subquery) in the same order, so nothing grows with the number of rows.

Amounts are written as numbers with the format 0.00: Excel stores every number as a binary
double anyway, and any amount below 10^13 with two decimals survives the Decimal -> float -> 15
significant digits round trip exactly, so what Excel shows and sums is the invoice's cents.
Quantities and unit prices (up to 15 significant digits, see `models.fine_field`) likewise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import IO, Any

import xlsxwriter
from django.utils.translation import gettext as _

from piaotong.invoices.choices import InvoiceKind, InvoiceStatus
from piaotong.invoices.models import InvoiceLine, InvoiceQuerySet
from piaotong.lib.money import RATES
from piaotong.lib.spreadsheet import safe_cell

CHUNK_SIZE = 2000
INVOICE_FIELDS = (
    "id",
    "number",
    "issue_date",
    "kind",
    "status",
    "seller_name",
    "seller_tax_id",
    "buyer_name",
    "buyer_tax_id",
    "total_amount",
    "total_tax",
    "total_with_tax",
)
ORDER = ("issue_date", "number", "id")
LINE_FIELDS = (
    "invoice__number",
    "position",
    "printed_name",
    "spec",
    "unit",
    "quantity",
    "unit_price",
    "amount",
    "tax_rate",
    "tax",
)

Progress = Callable[[int], None]


def invoice_header() -> list[str]:
    return [
        _("Invoice number"),
        _("Issue date"),
        _("Kind"),
        _("Status"),
        _("Seller"),
        _("Seller tax id"),
        _("Buyer"),
        _("Buyer tax id"),
        _("Amount"),
        _("Tax"),
        _("Total with tax"),
    ]


def line_header() -> list[str]:
    return [
        _("Invoice number"),
        _("Line"),
        _("Item"),
        _("Specification"),
        _("Unit"),
        _("Quantity"),
        _("Unit price"),
        _("Amount"),
        _("Tax rate"),
        _("Tax"),
    ]


def rate_label(key: str) -> str:
    """The printed label of a rate key, as on the invoice.

    >>> rate_label("0.13")
    '13%'
    """
    rate = RATES.get(key)
    return rate.label_zh if rate else key


def write_invoices_xlsx(
    invoices: InvoiceQuerySet, output: IO[bytes], progress: Progress | None = None
) -> int:
    """Write the invoices and their lines as an .xlsx workbook; returns the number of invoices.

    `progress` is called with the count of invoices written so far, every CHUNK_SIZE invoices
    and once more at the end.
    """
    workbook = xlsxwriter.Workbook(
        output, {"constant_memory": True, "in_memory": False, "strings_to_numbers": False}
    )
    formats = _Formats(workbook)
    sheet = workbook.add_worksheet("发票")
    _write_row(sheet, 0, invoice_header(), formats.header)
    sheet.freeze_panes(1, 0)
    ordered = invoices.order_by(*ORDER).values_list(*INVOICE_FIELDS)
    count = 0
    for count, row in enumerate(ordered.iterator(chunk_size=CHUNK_SIZE), start=1):
        _write_invoice(sheet, count, row, formats)
        if progress and count % CHUNK_SIZE == 0:
            progress(count)
    lines = workbook.add_worksheet("明细")
    _write_row(lines, 0, line_header(), formats.header)
    lines.freeze_panes(1, 0)
    all_lines = (
        InvoiceLine.objects.filter(invoice__in=invoices.values("id"))
        .order_by(*(f"invoice__{field}" for field in ORDER), "position")
        .values_list(*LINE_FIELDS)
    )
    for index, line in enumerate(all_lines.iterator(chunk_size=CHUNK_SIZE), start=1):
        _write_line(lines, index, line, formats)
    workbook.close()
    if progress and count % CHUNK_SIZE:
        progress(count)
    return count


class _Formats:
    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self.header = workbook.add_format({"bold": True})
        self.money = workbook.add_format({"num_format": "0.00"})
        self.fine = workbook.add_format({"num_format": "0.##############"})
        self.date = workbook.add_format({"num_format": "yyyy-mm-dd"})


def _write_row(sheet: Any, row: int, cells: Sequence[Any], cell_format: Any = None) -> None:
    for column, value in enumerate(cells):
        sheet.write_string(row, column, safe_cell(value), cell_format)


def _write_number(sheet: Any, row: int, column: int, value: Decimal | None, fmt: Any) -> None:
    if value is not None:
        sheet.write_number(row, column, float(value), fmt)


def _write_invoice(sheet: Any, row: int, values: Sequence[Any], formats: _Formats) -> None:
    _, number, issue_date, kind, status, *parties, amount, tax, total = values
    texts = [number, None, InvoiceKind(kind).label, InvoiceStatus(status).label, *parties]
    _write_row(sheet, row, texts)
    if issue_date is not None:
        sheet.write_datetime(row, 1, issue_date, formats.date)
    for column, value in enumerate((amount, tax, total), start=8):
        _write_number(sheet, row, column, value, formats.money)


def _write_line(sheet: Any, row: int, values: Sequence[Any], formats: _Formats) -> None:
    number, position, name, spec, unit, quantity, unit_price, amount, rate, tax = values
    _write_row(sheet, row, [number, None, name, spec, unit])
    sheet.write_number(row, 1, position)
    _write_number(sheet, row, 5, quantity, formats.fine)
    _write_number(sheet, row, 6, unit_price, formats.fine)
    _write_number(sheet, row, 7, amount, formats.money)
    sheet.write_string(row, 8, rate_label(rate))
    _write_number(sheet, row, 9, tax, formats.money)
