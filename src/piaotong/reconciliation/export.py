"""Excel export of a reconciliation (核对结果导出): one row per item, book and platform side by
side, with the explanation in Chinese and in English.

Written in xlsxwriter's constant_memory mode from a `.values_list()` iterator, so memory stays
flat for any number of items; every text cell goes through `safe_cell` (no formula injection
from a supplier's names or a book's numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import IO, Any

import xlsxwriter
from django.db.models import F, QuerySet
from django.utils.translation import gettext as _

from piaotong.lib.spreadsheet import safe_cell
from piaotong.reconciliation.choices import ItemRule, ItemStatus
from piaotong.reconciliation.explain import explain_both
from piaotong.reconciliation.models import ReconciliationItem

CHUNK_SIZE = 2000
FIELDS = (
    "status",
    "rule",
    "row",
    "number",
    "invoice__number",
    "issue_date",
    "invoice__issue_date",
    "seller_tax_id",
    "invoice__seller_tax_id",
    "seller_name",
    "invoice__seller_name",
    "amount",
    "invoice__total_amount",
    "tax",
    "invoice__total_tax",
    "total",
    "invoice__total_with_tax",
    "diffs",
    "notes",
)
DATE_COLUMNS = (5, 6)
MONEY_COLUMNS = (11, 12, 13, 14, 15, 16)


def header() -> list[str]:
    return [
        _("Status"),
        _("Rule"),
        _("Row"),
        _("Invoice number (books)"),
        _("Invoice number (platform)"),
        _("Issue date (books)"),
        _("Issue date (platform)"),
        _("Seller tax id (books)"),
        _("Seller tax id (platform)"),
        _("Seller (books)"),
        _("Seller (platform)"),
        _("Amount (books)"),
        _("Amount (platform)"),
        _("Tax (books)"),
        _("Tax (platform)"),
        _("Total with tax (books)"),
        _("Total with tax (platform)"),
        "说明",
        "Explanation",
    ]


def write_items_xlsx(items: QuerySet[ReconciliationItem], output: IO[bytes]) -> int:
    """Write the items as an .xlsx workbook; returns the number of items written."""
    workbook = xlsxwriter.Workbook(
        output, {"constant_memory": True, "in_memory": False, "strings_to_numbers": False}
    )
    bold = workbook.add_format({"bold": True})
    money = workbook.add_format({"num_format": "0.00"})
    day = workbook.add_format({"num_format": "yyyy-mm-dd"})
    sheet = workbook.add_worksheet("核对结果")
    for column, title in enumerate(header()):
        sheet.write_string(0, column, safe_cell(title), bold)
    sheet.freeze_panes(1, 0)
    count = 0
    rows = items.order_by(F("row").asc(nulls_last=True), "id").values_list(*FIELDS)
    for count, values in enumerate(rows.iterator(chunk_size=CHUNK_SIZE), start=1):
        _write(sheet, count, values, money, day)
    workbook.close()
    return count


def _write(sheet: Any, row: int, values: Sequence[Any], money: Any, day: Any) -> None:
    *cells, diffs, notes = values
    cells[0] = ItemStatus(cells[0]).label
    rule = cells[1]
    cells[1] = ItemRule(rule).label
    for column, value in enumerate(cells):
        if value is None:
            continue
        if column in MONEY_COLUMNS:
            sheet.write_number(row, column, float(Decimal(value)), money)
        elif column in DATE_COLUMNS:
            sheet.write_datetime(row, column, value, day)
        elif column == 2:
            sheet.write_number(row, column, value)
        else:
            sheet.write_string(row, column, safe_cell(str(value)))
    zh, en = explain_both(rule, diffs, notes)
    sheet.write_string(row, len(cells), safe_cell(zh))
    sheet.write_string(row, len(cells) + 1, safe_cell(en))
