"""Bulk verification (批量查验): a spreadsheet of invoice identifiers, or many files, in one go.

The spreadsheet is an .xlsx workbook (first sheet) or a CSV file in UTF-8 or GBK (GB18030). Its
first non-empty row names the columns, in Chinese or English:

========================= =====================================================
column                    names accepted
========================= =====================================================
number (required)         发票号码, 数电票号码, number, invoice number
issue date (required)     开票日期, issue date, date
total including tax       价税合计, total with tax, total     (数电票)
invoice code              发票代码, code, invoice code       (legacy invoices)
amount excluding tax      金额, 不含税金额, amount            (legacy 专票 kinds)
check code                校验码, 校验码后六位, check code    (legacy 普票 kinds)
QR text                   二维码, 二维码内容, qr              (instead of the others)
========================= =====================================================

Problems are reported per row (wrong or missing values, text where a number belongs, numbers
that Excel stored as floating point and so cut to 15 digits, formulas, duplicates) and the rows
that are fine are verified. Whole-file problems (not a spreadsheet, no header, too many rows)
refuse the file with one message.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any

import xlsxwriter
from django.utils import timezone, translation
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.spreadsheet import safe_cell
from piaotong.verification.actions import (
    Requester,
    do_verify_file,
    do_verify_invoice,
    do_verify_qr_text,
)
from piaotong.verification.choices import InputKind, Outcome
from piaotong.verification.conf import setting
from piaotong.verification.results import VerificationResult, headline
from piaotong.verification.rules import (
    Claim,
    LegacyClaim,
    digital_claim,
    field_label,
    legacy_claim,
)

MAX_XLSX_UNCOMPRESSED = 50 * 1024 * 1024
COLUMNS: dict[str, tuple[str, ...]] = {
    "number": ("发票号码", "数电票号码", "号码", "number", "invoice number", "invoice_number"),
    "issue_date": ("开票日期", "日期", "issue date", "issue_date", "date"),
    "total_with_tax": ("价税合计", "total with tax", "total_with_tax", "total"),
    "code": ("发票代码", "代码", "code", "invoice code", "invoice_code"),
    "amount": ("金额", "不含税金额", "amount", "amount excluding tax"),
    "check_code": ("校验码", "校验码后六位", "check code", "check_code"),
    "qr": ("二维码", "二维码内容", "qr", "qr text", "qr_text"),
}
_ALIASES = {alias.casefold(): name for name, aliases in COLUMNS.items() for alias in aliases}
_IDENTIFIER_COLUMNS = frozenset({"number", "code", "check_code"})


@dataclass
class BulkRow:
    """One data row: its spreadsheet row number, the claim or QR text, and its problems."""

    row: int
    claim: Claim | None = None
    qr: str = ""
    errors: list[RuleViolation] = field(default_factory=list)
    identifier: str = ""


# --- Reading the file ----------------------------------------------------------------------


def read_table(data: bytes, filename: str) -> list[tuple[int, list[Any]]]:
    """(row number, cells) of the first sheet of an .xlsx workbook or of a CSV file."""
    if data.startswith(b"PK\x03\x04"):
        return _read_xlsx(data)
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise RuleViolation(
            "file",
            "xls_not_supported",
            _("Old Excel files (.xls) are not read; save the sheet as .xlsx or CSV."),
        )
    return _read_csv(data)


def _read_xlsx(data: bytes) -> list[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > MAX_XLSX_UNCOMPRESSED:
                raise _unreadable()
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except RuleViolation:
        raise
    except Exception:  # openpyxl raises many kinds of errors for files that are not workbooks
        raise _unreadable() from None
    try:
        sheet = workbook.worksheets[0]
        limit = setting("PIAOTONG_VERIFY_BULK_MAX_ROWS") + 50
        rows = []
        for index, row in enumerate(sheet.iter_rows(), start=1):
            cells = [_xlsx_value(cell) for cell in row]
            if any(c not in (None, "") for c in cells):
                rows.append((index, cells))
            if len(rows) > limit:
                break
        return rows
    finally:
        workbook.close()


class Formula(str):
    """A cell that holds a formula (its text), kept apart so the row can say so."""


def _xlsx_value(cell: Any) -> Any:
    value = getattr(cell, "value", None)
    if getattr(cell, "data_type", "") == "f" or (isinstance(value, str) and value.startswith("=")):
        return Formula(str(value))
    return value


def _read_csv(data: bytes) -> list[tuple[int, list[Any]]]:
    text = decode_csv(data)
    rows = []
    limit = setting("PIAOTONG_VERIFY_BULK_MAX_ROWS") + 50
    for index, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        values: list[Any] = [Formula(c) if c.startswith("=") else c for c in cells]
        if any(c.strip() for c in cells):
            rows.append((index, values))
        if len(rows) > limit:
            break
    return rows


def decode_csv(data: bytes) -> str:
    """UTF-8 (with or without BOM), else GBK as Chinese Excel writes it (read as GB18030).

    >>> decode_csv("发票号码".encode("gbk"))
    '发票号码'
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise _unreadable() from None


def _unreadable() -> RuleViolation:
    return RuleViolation(
        "file",
        "spreadsheet_unreadable",
        _(
            "This file is not a readable spreadsheet. Upload an .xlsx workbook or a CSV file "
            "(UTF-8 or GBK) whose first row names the columns."
        ),
    )


# --- Rows --------------------------------------------------------------------------------------


def header_columns(cells: Sequence[Any]) -> dict[str, int]:
    """Which known column is at which position; unknown headings are ignored."""
    found: dict[str, int] = {}
    for position, cell in enumerate(cells):
        name = _ALIASES.get(str(cell or "").strip().casefold())
        if name and name not in found:
            found[name] = position
    return found


def _check_header(columns: dict[str, int], cells: Sequence[Any]) -> None:
    if "qr" in columns:
        return
    amounts = columns.keys() & {"total_with_tax", "amount", "check_code"}
    if {"number", "issue_date"} <= columns.keys() and amounts:
        return
    raise RuleViolation(
        "file",
        "columns_missing",
        _(
            "The first row must name the columns: 发票号码, 开票日期 and 价税合计 (for legacy "
            "invoices also 发票代码 and 金额 or 校验码), or a single 二维码 column. "
            "The first row found has: %(found)s."
        ),
        {"found": "、".join(str(c) for c in cells if c not in (None, "")) or "—"},
    )


def parse_rows(table: list[tuple[int, list[Any]]], today: date) -> list[BulkRow]:
    """Turn the table into claims; every row gets its own problems, duplicates included."""
    if not table:
        raise RuleViolation("file", "spreadsheet_empty", _("The spreadsheet has no rows."))
    _header_row, header = table[0]
    columns = header_columns(header)
    _check_header(columns, header)
    rows = table[1:]
    max_rows = setting("PIAOTONG_VERIFY_BULK_MAX_ROWS")
    if len(rows) > max_rows:
        raise RuleViolation(
            "file",
            "too_many_rows",
            _("At most %(max)s rows can be verified at once; split the file."),
            {"max": max_rows},
        )
    years = setting("PIAOTONG_VERIFY_YEARS")
    seen: dict[str, int] = {}
    parsed = []
    for number, cells in rows:
        row = _parse_row(number, cells, columns, today, years)
        if row.identifier and not row.errors:
            if row.identifier in seen:
                row.errors.append(
                    RuleViolation(
                        "number",
                        "duplicate_row",
                        _("The same invoice is already in row %(row)s; each is checked once."),
                        {"row": seen[row.identifier]},
                    )
                )
                row.claim, row.qr = None, ""
            else:
                seen[row.identifier] = number
        parsed.append(row)
    return parsed


def _parse_row(
    number: int, cells: list[Any], columns: dict[str, int], today: date, years: int
) -> BulkRow:
    row = BulkRow(number)
    values: dict[str, Any] = {}
    for name, position in columns.items():
        try:
            values[name] = _cell(name, cells[position] if position < len(cells) else None)
        except RuleViolation as violation:
            row.errors.append(violation)
    if row.errors:
        return row
    if values.get("qr"):
        row.qr = str(values["qr"]).strip()
        row.identifier = row.qr
        return row
    try:
        if values.get("code"):
            row.claim = legacy_claim(
                values.get("code"),
                values.get("number"),
                values.get("issue_date"),
                values.get("amount"),
                values.get("check_code"),
                today,
                years,
            )
        else:
            row.claim = digital_claim(
                values.get("number"),
                values.get("issue_date"),
                values.get("total_with_tax"),
                today,
                years,
            )
        row.identifier = row.claim.key
    except RuleViolation as violation:
        row.errors.append(violation)
    except RuleViolations as many:
        row.errors.extend(many.violations)
    return row


def _cell(name: str, value: Any) -> Any:
    if isinstance(value, Formula):
        raise RuleViolation(
            name,
            "formula",
            _(
                "The %(column)s cell holds a formula (%(formula)s); formulas are not "
                "evaluated. Type the value itself."
            ),
            {"column": field_label(name), "formula": str(value)[:40]},
        )
    if value is None:
        return ""
    if (
        name in _IDENTIFIER_COLUMNS
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return _numeric_identifier(name, value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, datetime | date):
        return value
    return str(value).strip()


def _numeric_identifier(name: str, value: float) -> str:
    # Excel keeps 15 significant digits of a number: a 20-digit invoice number typed into a
    # cell formatted as a number is silently changed, and leading zeros vanish.
    if (isinstance(value, float) and not value.is_integer()) or abs(value) >= 10**15:
        raise RuleViolation(
            name,
            "stored_as_number",
            _(
                "The %(column)s was stored as a number, and Excel keeps only 15 digits of a "
                "number. Format the column as text (文本) and type the values again."
            ),
            {"column": field_label(name)},
        )
    return str(int(value))


# --- Running and showing -------------------------------------------------------------------


def _both(render: Any) -> tuple[str, str]:
    with translation.override("zh-hans"):
        zh = str(render())
    with translation.override("en"):
        en = str(render())
    return zh, en


def result_row(row: int, identifier: str, result: VerificationResult) -> dict[str, Any]:
    """A results-table row, in both languages so the page and the export follow the reader."""
    message = _both(lambda: headline(result))
    labels = _both(lambda: "、".join(result.differing_labels))
    status = ("", "")
    if result.invoice is not None:
        status = (result.invoice.status_mark_zh, result.invoice.status_mark_en)
    outcome_label = _both(lambda: Outcome(result.outcome).label)
    return {
        "row": row,
        "identifier": identifier,
        "outcome": str(result.outcome),
        "outcome_zh": outcome_label[0],
        "outcome_en": outcome_label[1],
        "message_zh": message[0],
        "message_en": message[1],
        "differing_zh": labels[0],
        "differing_en": labels[1],
        "status_zh": status[0],
        "status_en": status[1],
        "hints_zh": " ".join(_both(h.text)[0] for h in result.hints),
        "hints_en": " ".join(_both(h.text)[1] for h in result.hints),
    }


def _error_text(errors: Sequence[RuleViolation], separator: str, colon: str) -> str:
    return separator.join(f"{field_label(e.field)}{colon}{e.text()}" for e in errors)


def error_row(row: int, identifier: str, errors: Sequence[RuleViolation]) -> dict[str, Any]:
    zh, _unused = _both(lambda: _error_text(errors, "；", "："))
    _unused, en = _both(lambda: _error_text(errors, "; ", ": "))
    label = _both(lambda: Outcome.INVALID.label)
    return {
        "row": row,
        "identifier": identifier,
        "outcome": str(Outcome.INVALID),
        "outcome_zh": label[0],
        "outcome_en": label[1],
        "message_zh": zh,
        "message_en": en,
        "differing_zh": "",
        "differing_en": "",
        "status_zh": "",
        "status_en": "",
        "hints_zh": "",
        "hints_en": "",
    }


def verify_rows(requester: Requester, rows: list[BulkRow]) -> Iterator[dict[str, Any]]:
    """Verify each good row (one transaction each, counted like single checks)."""
    for row in rows:
        if row.errors:
            yield error_row(row.row, row.identifier, row.errors)
        elif row.qr:
            try:
                result = do_verify_qr_text(requester, row.qr)
            except (RuleViolation, RuleViolations) as error:
                yield error_row(row.row, row.qr, _violations(error))
            else:
                yield result_row(row.row, result.identifier or row.qr, result)
        else:
            assert row.claim is not None
            kind = InputKind.LEGACY if isinstance(row.claim, LegacyClaim) else InputKind.DIGITAL
            yield result_row(row.row, row.identifier, do_verify_invoice(requester, row.claim, kind))


def verify_files(
    requester: Requester, files: Sequence[tuple[str, bytes]]
) -> Iterator[dict[str, Any]]:
    for index, (name, data) in enumerate(files, start=1):
        try:
            result = do_verify_file(requester, data, name)
        except (RuleViolation, RuleViolations) as error:
            yield error_row(index, name, _violations(error))
        else:
            yield result_row(index, f"{name}: {result.identifier}", result)


def _violations(error: RuleViolation | RuleViolations) -> list[RuleViolation]:
    return error.violations if isinstance(error, RuleViolations) else [error]


def localized(row: dict[str, Any], language: str | None = None) -> dict[str, Any]:
    """The row's texts in one language (the reader's)."""
    suffix = "en" if (language or translation.get_language() or "").startswith("en") else "zh"
    texts = {key: row[f"{key}_{suffix}"] for key in ("message", "differing", "status", "hints")}
    return {
        "row": row["row"],
        "identifier": row["identifier"],
        "outcome": row["outcome"],
        "outcome_label": row[f"outcome_{suffix}"],
        **texts,
    }


def write_results_xlsx(rows: Sequence[dict[str, Any]], output: IO[bytes]) -> int:
    """The results table as an .xlsx workbook (constant memory; cells safe from formulas)."""
    workbook = xlsxwriter.Workbook(
        output, {"constant_memory": True, "in_memory": False, "strings_to_numbers": False}
    )
    bold = workbook.add_format({"bold": True})
    sheet = workbook.add_worksheet(gettext("Verification"))
    header = [
        gettext("Row"),
        gettext("Invoice"),
        gettext("Result"),
        gettext("Status mark"),
        gettext("Fields that differ"),
        gettext("Message"),
        gettext("Advice"),
    ]
    for column, text in enumerate(header):
        sheet.write_string(0, column, safe_cell(text), bold)
    sheet.freeze_panes(1, 0)
    for index, raw in enumerate(rows, start=1):
        row = localized(raw)
        sheet.write_number(index, 0, row["row"])
        cells = [
            row["identifier"],
            row["outcome_label"],
            row["status"],
            row["differing"],
            row["message"],
            row["hints"],
        ]
        for column, value in enumerate(cells, start=1):
            sheet.write_string(index, column, safe_cell(value))
    workbook.close()
    return len(rows)


def export_name() -> str:
    return f"verification-{timezone.localtime():%Y%m%d-%H%M%S}.xlsx"
