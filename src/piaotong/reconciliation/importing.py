"""Reading purchase records (进项台账) and supplier lists (供应商清单) from Excel or CSV.

The file is streamed row by row, never loaded whole: openpyxl's read-only mode for .xlsx, the
csv module over a decoding stream for CSV (UTF-8 with or without BOM, UTF-16 with BOM, else
GB18030, the superset of GBK that Chinese Excel and WPS write). Every row is checked; problems
are collected as `Issue`s naming the row, the column, what is wrong and how to fix it. The caller
stores records only if there is no issue at all: an import is complete or refused, never half.

Columns are found by their header (Chinese or English synonyms, `COLUMNS`), in the first rows
of the first sheet, so title rows above the header are fine. Merged cells and formulas are not
visible through the read-only reader, so the sheet's XML is scanned once for them first
(`scan_sheet`): merged cells in data rows are refused; formulas are read through their saved
result (and the report says which cells), or refused when no result was saved.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.utils.translation import gettext_lazy as _
from openpyxl import load_workbook
from openpyxl.utils.cell import column_index_from_string, get_column_letter

from piaotong.reconciliation.matching import BookRecord, NumberIndex, RecordTable
from piaotong.reconciliation.normalize import invoice_key, tax_id_key

MAX_ROWS = 1_000_000
MAX_ISSUES_KEPT = 1000
HEADER_SEARCH_ROWS = 20
PROGRESS_EVERY = 5000
INTERN_LIMIT = 100_000
MAX_AMOUNT = Decimal("999999999999.99")
CENT = Decimal("0.01")
EXCEL_EPOCH = date(1899, 12, 30)

# Header synonyms, compared after `header_key` (NFKC, lower case, no spaces or punctuation).
COLUMNS: dict[str, tuple[str, ...]] = {
    "number": (
        "发票号码",
        "发票号",
        "数电票号码",
        "数电发票号码",
        "全电发票号码",
        "号码",
        "invoice number",
        "invoice no",
        "invoice no.",
        "number",
    ),
    "code": ("发票代码", "代码", "invoice code", "code"),
    "issue_date": (
        "开票日期",
        "开具日期",
        "发票日期",
        "日期",
        "invoice date",
        "issue date",
        "date",
    ),
    "seller_tax_id": (
        "销售方纳税人识别号",
        "销方纳税人识别号",
        "销售方税号",
        "销方税号",
        "销售方识别号",
        "销售方统一社会信用代码",
        "供应商税号",
        "供应商纳税人识别号",
        "纳税人识别号",
        "税号",
        "seller tax id",
        "supplier tax id",
        "seller tin",
        "seller taxpayer id",
        "tax id",
    ),
    "seller_name": (
        "销售方名称",
        "销方名称",
        "供应商名称",
        "供应商",
        "销售方",
        "销货单位",
        "seller name",
        "supplier name",
        "seller",
        "supplier",
    ),
    "amount": (
        "金额",
        "不含税金额",
        "金额不含税",
        "合计金额",
        "发票金额",
        "amount",
        "net amount",
        "amount excluding tax",
        "amount excl tax",
        "pre-tax amount",
    ),
    "tax": ("税额", "合计税额", "增值税额", "tax", "tax amount", "vat", "vat amount"),
    "total": (
        "价税合计",
        "价税合计小写",
        "含税金额",
        "金额含税",
        "价税合计金额",
        "total",
        "total with tax",
        "total amount",
        "amount including tax",
        "gross amount",
    ),
}
COLUMN_LABELS: dict[str, str] = {
    "number": "发票号码 (invoice number)",
    "code": "发票代码 (invoice code)",
    "issue_date": "开票日期 (issue date)",
    "seller_tax_id": "销售方纳税人识别号 (seller tax id)",
    "seller_name": "销售方名称 (seller name)",
    "amount": "金额 (amount)",
    "tax": "税额 (tax)",
    "total": "价税合计 (total with tax)",
}
MONEY_COLUMNS = ("amount", "tax", "total")
TOTAL_ROW_WORDS = ("合计", "总计", "小计", "total")

# What is wrong and how to fix it, per issue code. Parameters: row, column, value and more.
ISSUE_MESSAGES = {
    "file_type": _(
        "This file is neither an Excel workbook (.xlsx) nor CSV text. Save it as .xlsx or CSV "
        "and upload it again."
    ),
    "xls_format": _(
        "This is the old Excel format (.xls), which is not read. Open it in Excel or WPS and save "
        "it as an Excel workbook (.xlsx) or as CSV."
    ),
    "broken_xlsx": _(
        "The workbook cannot be opened (%(reason)s). Open it in Excel or WPS, save it again as "
        ".xlsx and upload it again."
    ),
    "encoding": _(
        'The file is not UTF-8 or GB18030/GBK text. Save it as "CSV UTF-8" and upload it again.'
    ),
    "bad_bytes": _(
        "This row contains bytes that are not valid %(encoding)s text; reading stopped here. "
        'Save the file as "CSV UTF-8" and upload it again.'
    ),
    "no_header": _(
        "No header row with an invoice number column (发票号码) was found in the first "
        "%(rows)s rows; the first row reads: %(found)s. Add a header row naming the columns."
    ),
    "missing_column": _(
        "Column %(column)s is missing. Add it, or rename the column that holds it (accepted "
        "names: %(names)s)."
    ),
    "missing_amount_column": _(
        "There is neither an amount column (金额) nor a total-with-tax column (价税合计). Add at "
        "least one of them."
    ),
    "duplicate_column": _(
        "Columns %(first)s and %(second)s both mean %(column)s. Delete or rename one of them."
    ),
    "empty_file": _("The file has a header but no data rows. Fill in the rows and upload again."),
    "too_many_rows": _(
        "The file has more than %(limit)s data rows; reading stopped at row %(row)s. Split it "
        "into files of at most %(limit)s rows."
    ),
    "missing_value": _(
        "%(column)s is empty. Fill it in, or delete the row if it is not an invoice."
    ),
    "missing_amount": _(
        "The row has neither an amount (金额) nor a total with tax (价税合计). Fill in at least one."
    ),
    "invalid_number": _(
        '"%(value)s" is not an invoice number: a 数电 invoice has 20 digits, a legacy one an '
        "8-digit number with its 10- or 12-digit invoice code (发票代码). Correct the number."
    ),
    "number_as_float": _(
        "The invoice number was stored as a number, so Excel kept only its first 15 digits "
        "(%(value)s). Format the column as text (文本), enter the numbers again, and upload."
    ),
    "legacy_without_code": _(
        '"%(value)s" is an 8-digit legacy invoice number, but the row has no invoice code '
        "(发票代码). Add the invoice code column or fill in the code."
    ),
    "invalid_date": _(
        '"%(value)s" is not a date. Write dates as 2026-03-05, 2026/3/5, 20260305 or 2026年3月5日.'
    ),
    "invalid_amount": _(
        '"%(value)s" is not an amount. Write digits with at most two decimals, e.g. 1234.50 '
        "(with a minus sign for red-letter invoices)."
    ),
    "too_many_decimals": _(
        '"%(value)s" has more than two decimals. Round the amount to the cent (0.01).'
    ),
    "amount_too_large": _(
        '"%(value)s" is larger than any invoice amount. Check the column: is it a number of '
        "another kind?"
    ),
    "invalid_tax_id": _(
        '"%(value)s" is not a taxpayer id: it has 15, 17, 18 or 20 letters and digits. Correct '
        "the seller's tax id."
    ),
    "identical_row": _("This row repeats row %(first)s exactly. Delete the repeated row."),
    "merged_cells": _(
        "Cells %(value)s are merged. Unmerge them (取消合并单元格) and fill in every row."
    ),
    "internal_error": _(
        "The import stopped on an unexpected error (%(error)s); nothing was imported. Upload the "
        "file again; if it fails again, send it to your administrator."
    ),
    "formula_without_value": _(
        "Cell %(value)s holds a formula with no saved result. Open the file in Excel or WPS and "
        "save it, or paste the values only (选择性粘贴 → 数值)."
    ),
}

# Facts about the file that are not errors, shown on the job page.
NOTE_MESSAGES = {
    "encoding": _('Read as %(encoding)s text, columns separated by "%(delimiter)s".'),
    "sheet": _('Read the first sheet, "%(sheet)s", of %(count)s.'),
    "header_row": _("The header is row %(row)s; rows above it were skipped."),
    "formulas_cached": _(
        "%(count)s cells hold formulas; their saved results were used (%(cells)s)."
    ),
    "total_rows_skipped": _("Rows %(rows)s look like totals (合计) and were skipped."),
    "ignored_columns": _("Columns not used: %(columns)s."),
    "shared_numbers": _(
        "%(count)s rows repeat the invoice number of an earlier row with other facts (rows "
        "%(rows)s): a typing slip or an invoice booked twice. They are matched like the others; "
        "their explanations say which row took the invoice."
    ),
    "seller_from_form": _(
        "The file has no seller tax id column; every row was given %(tax_id)s, as entered."
    ),
}


@dataclass(frozen=True)
class Issue:
    """One problem with the file; `row` 0 and `column` "" mean the file as a whole."""

    code: str
    row: int = 0
    column: str = ""
    value: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        params = {"row": self.row, "column": self.column, "value": self.value} | self.params
        return str(ISSUE_MESSAGES[self.code]) % params

    def location(self) -> str:
        """ "Row 7, 金额 (E)", "Row 7", or "File"."""
        if self.row and self.column:
            return _("Row %(row)s, %(column)s") % {"row": self.row, "column": self.column}
        if self.row:
            return _("Row %(row)s") % {"row": self.row}
        return str(_("File"))


@dataclass(frozen=True)
class Note:
    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        return str(NOTE_MESSAGES[self.code]) % self.params


@dataclass
class ReadResult:
    """Everything read from one file: records (only meaningful without issues; a column table,
    about 130 bytes a row), issues (the first MAX_ISSUES_KEPT), their total count, notes and the
    number of data rows read."""

    records: RecordTable = field(default_factory=RecordTable)
    issues: list[Issue] = field(default_factory=list)
    issue_count: int = 0
    notes: list[Note] = field(default_factory=list)
    rows_read: int = 0

    def add(self, issue: Issue) -> None:
        self.issue_count += 1
        if len(self.issues) < MAX_ISSUES_KEPT:
            self.issues.append(issue)

    @property
    def ok(self) -> bool:
        return self.issue_count == 0


Progress = Callable[[int, int], None]


class Refused(Exception):
    """The file cannot be read at all; carries the one issue that says why."""

    def __init__(self, issue: Issue) -> None:
        self.issue = issue
        super().__init__(issue.code)


# --- Cells ------------------------------------------------------------------------------------


def header_key(text: Any) -> str:
    """A header cell as compared with the synonyms.

    >>> header_key(" 金额（不含税）* "), header_key("Invoice_No.")
    ('金额不含税', 'invoice no')
    """
    text = unicodedata.normalize("NFKC", str(text or "")).lower()
    text = re.sub(r"[()\[\]*:：/\\]", "", text).replace("_", " ").replace(".", "")
    return " ".join(text.split()).replace(" ", "") if _has_cjk(text) else " ".join(text.split())


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


_SYNONYMS = {header_key(name): column for column, names in COLUMNS.items() for name in names}


def cell_text(value: Any) -> str:
    """A cell as text, as the user typed it (numbers without a trailing .0)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    return str(value).strip()


def parse_money(value: Any) -> Decimal:
    """An amount in yuan, exact to the cent; raises ValueError(issue code).

    >>> parse_money("￥1,234.5"), parse_money(1234.56), parse_money("(12.00)")
    (Decimal('1234.50'), Decimal('1234.56'), Decimal('-12.00'))
    """
    if isinstance(value, bool):
        raise ValueError("invalid_amount")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        # Excel stores binary doubles: 100.3 may arrive as 100.30000000000001.
        amount = Decimal(repr(value))
        if abs(amount - amount.quantize(CENT)) > Decimal("0.000001"):
            raise ValueError("too_many_decimals")
        amount = amount.quantize(CENT)
    else:
        amount = _money_text(str(value))
    if abs(amount) > MAX_AMOUNT:
        raise ValueError("amount_too_large")
    return amount.quantize(CENT)


_MONEY_TEXT = re.compile(r"[+-]?\d+(?:\.\d+)?")


def _money_text(text: str) -> Decimal:
    text = unicodedata.normalize("NFKC", text).strip()
    text = re.sub(r"(?i)[,\s¥元]|rmb|cny", "", text)
    negative = text.startswith("(") and text.endswith(")")
    text = text.strip("()")
    if not _MONEY_TEXT.fullmatch(text):
        raise ValueError("invalid_amount")
    amount = Decimal(text)
    if amount != amount.quantize(CENT):
        raise ValueError("too_many_decimals")
    return -amount if negative else amount


_DATE_TEXT = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T].*)?")


def parse_date(value: Any) -> date:
    """A date from a cell: a date, an Excel serial number, or text in the common forms.

    >>> parse_date("2026年3月5日"), parse_date("20260305"), parse_date(46086)
    (datetime.date(2026, 3, 5), datetime.date(2026, 3, 5), datetime.date(2026, 3, 5))
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        whole = int(value)
        if 19000101 <= whole <= 20991231:
            return _ymd(str(whole)[:4], str(whole)[4:6], str(whole)[6:])
        if 20000 <= whole <= 80000:  # an Excel serial day number
            return EXCEL_EPOCH + timedelta(days=whole)
        raise ValueError("invalid_date")
    text = unicodedata.normalize("NFKC", str(value)).strip()
    match = _DATE_TEXT.fullmatch(text)
    if match:
        return _ymd(*match.groups())
    if re.fullmatch(r"\d{8}", text):
        return _ymd(text[:4], text[4:6], text[6:])
    raise ValueError("invalid_date")


def _ymd(year: str, month: str, day: str) -> date:
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise ValueError("invalid_date") from None


def number_text(value: Any) -> str:
    """The invoice number cell as text; raises ValueError when a spreadsheet number has lost
    digits (Excel keeps 15 significant digits of a number, a 数电 number has 20)."""
    if isinstance(value, float):
        if not value.is_integer() or abs(value) >= 1e15:
            raise ValueError("number_as_float")
        return str(int(value))
    return cell_text(value)


def check_tax_id(text: str) -> str:
    tax_id = tax_id_key(text)
    if len(tax_id) not in (15, 17, 18, 20) or not tax_id.isascii() or not tax_id.isalnum():
        raise ValueError("invalid_tax_id")
    return tax_id


# --- Files ------------------------------------------------------------------------------------


def read_file(
    path: Path, *, default_seller_tax_id: str = "", progress: Progress | None = None
) -> ReadResult:
    """Read and check every row of an .xlsx or CSV file."""
    result = ReadResult()
    try:
        source = open_source(path, result)
        _RowReader(source, result, default_seller_tax_id, progress).run()
    except _HeaderRefused:
        pass  # the header's issues are in the result already
    except Refused as refused:
        result.add(refused.issue)
    return result


@dataclass
class Source:
    """Rows of a file as (row number, cells), with what was learned opening it."""

    rows: Iterator[tuple[int, tuple[Any, ...]]]
    estimate: int
    column_name: Callable[[int], str]
    merged: list[tuple[str, int, int]] = field(default_factory=list)  # (range, first, last row)
    formulas: FormulaCells | None = None


def open_source(path: Path, result: ReadResult) -> Source:
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK\x03\x04"):
        return _xlsx_source(path, result)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise Refused(Issue("xls_format"))
    return _csv_source(path, result)


def _xlsx_source(path: Path, result: ReadResult) -> Source:
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        if isinstance(error, KeyError) or not zipfile.is_zipfile(path):
            raise Refused(Issue("file_type")) from None
        raise Refused(Issue("broken_xlsx", params={"reason": type(error).__name__})) from None
    sheet = workbook.worksheets[0]
    if len(workbook.worksheets) > 1:
        result.notes.append(
            Note("sheet", {"sheet": sheet.title, "count": len(workbook.worksheets)})
        )
    member = getattr(sheet, "_worksheet_path", "xl/worksheets/sheet1.xml")
    scan = scan_sheet(path, member)
    sheet.reset_dimensions()  # stored dimensions may be wrong: read what is there
    rows = (
        (number, tuple(values))
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
    )
    return Source(
        rows=rows,
        estimate=scan.rows,
        column_name=lambda index: get_column_letter(index + 1),
        merged=scan.merged,
        formulas=scan.formulas,
    )


def _csv_source(path: Path, result: ReadResult) -> Source:
    with path.open("rb") as handle:
        sample = handle.read(64 * 1024)
    encoding = detect_encoding(sample)
    text_sample = sample.decode(encoding, errors="ignore")
    try:
        delimiter = csv.Sniffer().sniff(text_sample.split("\n", 20)[0], ",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    shown = {"utf-8-sig": "UTF-8 (BOM)", "utf-8": "UTF-8", "gb18030": "GB18030 (GBK)"}
    result.notes.append(
        Note(
            "encoding",
            {
                "encoding": shown.get(encoding, encoding.upper()),
                "delimiter": delimiter.replace("\t", "Tab"),
            },
        )
    )
    return Source(
        rows=_csv_rows(path, encoding, delimiter),
        estimate=_count_lines(path),
        column_name=lambda index: get_column_letter(index + 1),
    )


def detect_encoding(sample: bytes) -> str:
    """utf-8-sig, utf-16 (with BOM), utf-8 or gb18030; refuses binary and undecodable text.

    >>> detect_encoding("发票号码".encode("gbk")), detect_encoding("发票号码".encode())
    ('gb18030', 'utf-8')
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        raise Refused(Issue("file_type"))
    for encoding in ("utf-8", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            decoder.decode(sample, final=False)  # a character cut at the sample's end is fine
        except UnicodeDecodeError:
            continue
        return encoding
    raise Refused(Issue("encoding"))


def _csv_rows(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[int, tuple[Any, ...]]]:
    number = 0
    try:
        for number, cells in enumerate(
            csv.reader(_decoded_lines(path, encoding), delimiter=delimiter), start=1
        ):
            yield number, tuple(cells)
    except UnicodeDecodeError:
        shown = {"gb18030": "GB18030", "utf-16": "UTF-16"}.get(encoding, "UTF-8")
        raise Refused(Issue("bad_bytes", row=number + 1, params={"encoding": shown})) from None
    except csv.Error:
        raise Refused(Issue("file_type", row=number + 1)) from None


def _decoded_lines(path: Path, encoding: str) -> Iterator[str]:
    """Lines decoded one by one, so a decoding error belongs to the row that holds it. A
    newline byte never occurs inside a UTF-8 or GB18030 character; UTF-16 is decoded as a
    stream."""
    with path.open("rb") as raw:
        if encoding == "utf-16":
            yield from io.TextIOWrapper(raw, encoding=encoding, newline="")
            return
        for line in raw:
            yield line.decode(encoding)


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            count += chunk.count(b"\n")
    return max(count - 1, 0)


# --- Merged cells and formulas in the sheet XML ---------------------------------------------------


class FormulaCells:
    """Cells holding formulas, per column as runs of rows (formulas fill whole columns, so runs
    stay few however long the sheet)."""

    def __init__(self) -> None:
        self.runs: dict[int, tuple[list[int], list[int]]] = {}  # column -> (starts, ends)
        self.count = 0

    def add(self, column: int, row: int) -> None:
        starts, ends = self.runs.setdefault(column, ([], []))
        self.count += 1
        if ends and ends[-1] == row - 1:
            ends[-1] = row
        else:
            starts.append(row)
            ends.append(row)

    def __contains__(self, cell: tuple[int, int]) -> bool:
        row, column = cell
        if column not in self.runs:
            return False
        starts, ends = self.runs[column]
        index = bisect.bisect_right(starts, row) - 1
        return index >= 0 and ends[index] >= row

    def sample(self, limit: int = 5) -> str:
        cells = []
        for column, (starts, ends) in sorted(self.runs.items()):
            for start, end in zip(starts, ends, strict=True):
                letter = get_column_letter(column + 1)
                cells.append(
                    f"{letter}{start}" if start == end else f"{letter}{start}:{letter}{end}"
                )
        return ", ".join(cells[:limit]) + (" …" if len(cells) > limit else "")


@dataclass
class SheetScan:
    rows: int
    merged: list[tuple[str, int, int]]
    formulas: FormulaCells


_FORMULA_CELL = re.compile(rb'<(?:\w+:)?c\b[^>]*?\br="([A-Z]+)(\d+)"[^>]*>\s*<(?:\w+:)?f\b')
_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Z]+)(\d+)(?::([A-Z]+)(\d+))?"')
_ROW = re.compile(rb"<(?:\w+:)?row\b")
_OVERLAP = 1024


def scan_sheet(path: Path, member: str) -> SheetScan:
    """Rows, merged ranges and formula cells of one sheet, from its XML in one streaming pass.

    Chunks overlap by more than any tag is long; a match is counted only if it starts after the
    end of the previous one, so nothing is counted twice.
    """
    merged: list[tuple[str, int, int]] = []
    formulas, rows = FormulaCells(), 0
    with zipfile.ZipFile(path) as archive, archive.open(member) as xml:
        offset, carry, consumed = 0, b"", 0
        while chunk := xml.read(1 << 20):
            buffer, base = carry + chunk, offset - len(carry)
            for pattern in (_FORMULA_CELL, _MERGE, _ROW):
                for match in pattern.finditer(buffer):
                    if base + match.start() < consumed:
                        continue
                    if pattern is _ROW:
                        rows += 1
                    elif pattern is _MERGE:
                        merged.append(_merge_range(match.groups()))
                    else:
                        column = column_index_from_string(match.group(1).decode()) - 1
                        formulas.add(column, int(match.group(2)))
            consumed = base + len(buffer) - _OVERLAP
            offset += len(chunk)
            carry = buffer[-_OVERLAP:]
    return SheetScan(rows=max(rows - 1, 0), merged=merged, formulas=formulas)


def _merge_range(groups: tuple[bytes | None, ...]) -> tuple[str, int, int]:
    first_col, first_row, last_col, last_row = (g.decode() if g else "" for g in groups)
    text = f"{first_col}{first_row}:{last_col}{last_row}" if last_col else f"{first_col}{first_row}"
    return text, int(first_row), int(last_row or first_row)


# --- Rows -------------------------------------------------------------------------------------


class _RowReader:
    def __init__(
        self,
        source: Source,
        result: ReadResult,
        default_seller_tax_id: str,
        progress: Progress | None,
    ) -> None:
        self.source, self.result, self.progress = source, result, progress
        self.default_seller = tax_id_key(default_seller_tax_id)
        self.columns: dict[str, int] = {}
        # Index of the first record of each invoice key (result.records is a column table).
        self.seen = NumberIndex(result.records.keys, add_all=False)
        self.totals_skipped: list[int] = []
        self.shared_numbers: list[int] = []
        self.formulas_used = 0
        self._interned: dict[Any, Any] = {}

    def intern(self, value: Any) -> Any:
        """Share repeated dates, tax ids and names between rows (bounded: unique values would
        only grow the table)."""
        found = self._interned.get(value)
        if found is not None:
            return found
        if len(self._interned) < INTERN_LIMIT:
            self._interned[value] = value
        return value

    def run(self) -> None:
        rows = self.source.rows
        header_row = self.find_header(rows)
        self.check_merged(header_row)
        for number, cells in rows:
            if self.result.rows_read >= MAX_ROWS:
                self.result.add(Issue("too_many_rows", row=number, params={"limit": MAX_ROWS}))
                break
            if not any(cell not in (None, "") for cell in cells):
                continue
            self.result.rows_read += 1
            self.read_row(number, cells)
            if self.progress and self.result.rows_read % PROGRESS_EVERY == 0:
                self.progress(self.result.rows_read, self.source.estimate)
        self.finish()

    def finish(self) -> None:
        if self.result.rows_read == 0 and self.result.ok:
            self.result.add(Issue("empty_file"))
        if self.totals_skipped:
            rows = ", ".join(str(r) for r in self.totals_skipped[:10])
            self.result.notes.append(Note("total_rows_skipped", {"rows": rows}))
        if self.shared_numbers:
            rows = ", ".join(str(r) for r in self.shared_numbers[:10])
            self.result.notes.append(
                Note("shared_numbers", {"count": len(self.shared_numbers), "rows": rows})
            )
        formulas = self.source.formulas
        if formulas is not None and formulas.count:
            self.result.notes.append(
                Note("formulas_cached", {"count": formulas.count, "cells": formulas.sample()})
            )
        if self.progress:
            self.progress(self.result.rows_read, self.result.rows_read)

    # Header -----------------------------------------------------------------------------------

    def find_header(self, rows: Iterator[tuple[int, tuple[Any, ...]]]) -> int:
        first_seen: tuple[Any, ...] | None = None
        for number, cells in rows:
            if first_seen is None and any(cells):
                first_seen = cells
            mapped = {index: _SYNONYMS.get(header_key(cell)) for index, cell in enumerate(cells)}
            if "number" in mapped.values() and len({v for v in mapped.values() if v}) >= 2:
                self.map_columns(number, cells, mapped)
                return number
            if number >= HEADER_SEARCH_ROWS:
                break
        found = ", ".join(cell_text(c) for c in (first_seen or ()) if c not in (None, ""))[:200]
        raise Refused(
            Issue("no_header", params={"rows": HEADER_SEARCH_ROWS, "found": found or "-"})
        )

    def map_columns(
        self, number: int, cells: tuple[Any, ...], mapped: dict[int, str | None]
    ) -> None:
        if number > 1:
            self.result.notes.append(Note("header_row", {"row": number}))
        ignored = []
        for index, column in mapped.items():
            if column is None:
                if cell_text(cells[index]):
                    ignored.append(cell_text(cells[index]))
                continue
            if column in self.columns:
                self.result.add(
                    Issue(
                        "duplicate_column",
                        row=number,
                        params={
                            "first": self.name(self.columns[column], cells),
                            "second": self.name(index, cells),
                            "column": COLUMN_LABELS[column],
                        },
                    )
                )
                continue
            self.columns[column] = index
        if ignored:
            self.result.notes.append(Note("ignored_columns", {"columns": ", ".join(ignored[:20])}))
        self.header = cells
        self.check_columns(number)

    def name(self, index: int, cells: tuple[Any, ...] | None = None) -> str:
        cells = cells if cells is not None else self.header
        return f"{cell_text(cells[index])} ({self.source.column_name(index)})"

    def check_columns(self, number: int) -> None:
        required = ["number", "issue_date"]
        if "seller_tax_id" not in self.columns:
            if self.default_seller:
                self.result.notes.append(Note("seller_from_form", {"tax_id": self.default_seller}))
            else:
                required.append("seller_tax_id")
        for column in required:
            if column not in self.columns:
                names = (
                    "、".join(COLUMNS[column][:4])
                    + " / "
                    + ", ".join(n for n in COLUMNS[column] if n.isascii())
                )
                self.result.add(
                    Issue(
                        "missing_column",
                        row=number,
                        params={"column": COLUMN_LABELS[column], "names": names},
                    )
                )
        if "amount" not in self.columns and "total" not in self.columns:
            self.result.add(Issue("missing_amount_column", row=number))
        if not self.result.ok:
            raise _HeaderRefused

    def check_merged(self, header_row: int) -> None:
        for text, first, last in self.source.merged:
            if last > header_row:
                self.result.add(Issue("merged_cells", row=max(first, header_row + 1), value=text))

    # Rows -------------------------------------------------------------------------------------

    def cell(self, cells: tuple[Any, ...], column: str) -> Any:
        index = self.columns.get(column)
        if index is None or index >= len(cells):
            return None
        value = cells[index]
        return value.strip() if isinstance(value, str) else value

    def issue(self, code: str, number: int, column: str, value: Any = "", **params: Any) -> None:
        index = self.columns.get(column)
        label = self.name(index) if index is not None else COLUMN_LABELS.get(column, column)
        self.result.add(
            Issue(code, row=number, column=label, value=cell_text(value)[:200], params=params)
        )

    def read_row(self, number: int, cells: tuple[Any, ...]) -> None:
        raw_number = self.cell(cells, "number")
        if isinstance(raw_number, str) and raw_number.lower().startswith(TOTAL_ROW_WORDS):
            self.totals_skipped.append(number)
            self.result.rows_read -= 1
            return
        errors_before = self.result.issue_count
        self.check_formulas(number, cells)
        key = self.read_number(number, cells)
        issue_date = self.read_date(number, cells)
        seller = self.read_seller(number, cells)
        money = self.read_money(number, cells)
        if self.result.issue_count != errors_before:
            return
        assert key is not None and issue_date is not None and seller is not None
        record = BookRecord(
            row=number,
            number=key[1],
            key=key[0],
            issue_date=issue_date,
            seller_tax_id=seller,
            seller_name=self.intern(cell_text(self.cell(cells, "seller_name"))[:200]),
            amount=money["amount"],
            tax=money["tax"],
            total=money["total"],
        )
        self.remember(record)

    def check_formulas(self, number: int, cells: tuple[Any, ...]) -> None:
        formulas = self.source.formulas
        if formulas is None or not formulas.count:
            return
        for column, index in self.columns.items():
            if (number, index) in formulas and self.cell(cells, column) in (None, ""):
                cell = f"{get_column_letter(index + 1)}{number}"
                self.issue("formula_without_value", number, column, cell)

    def read_number(self, number: int, cells: tuple[Any, ...]) -> tuple[str, str] | None:
        raw, code_raw = self.cell(cells, "number"), self.cell(cells, "code")
        try:
            text = number_text(raw)
        except ValueError as error:
            self.issue(str(error), number, "number", raw)
            return None
        code = cell_text(code_raw)
        if not text:
            self.issue("missing_value", number, "number")
            return None
        if code and isinstance(raw, int | float) and len(text) < 8:
            text = text.zfill(8)  # a legacy number typed into a number cell lost its zeros
        key = invoice_key(text, code)
        if len(key.number) == 20 and key.number.isdigit():
            # Most numbers are written as their key: keep one string for both.
            return (text if key.number == text else key.number), text
        if len(key.number) == 8 and key.number.isdigit():
            if not key.code:
                self.issue("legacy_without_code", number, "number", text)
                return None
            if len(key.code) in (10, 12) and key.code.isdigit():
                return key.key, text
        self.issue("invalid_number", number, "number", text if not code else f"{code} {text}")
        return None

    def read_date(self, number: int, cells: tuple[Any, ...]) -> date | None:
        raw = self.cell(cells, "issue_date")
        if raw in (None, ""):
            self.issue("missing_value", number, "issue_date")
            return None
        try:
            return self.intern(parse_date(raw))  # type: ignore[no-any-return]
        except ValueError as error:
            self.issue(str(error), number, "issue_date", raw)
            return None

    def read_seller(self, number: int, cells: tuple[Any, ...]) -> str | None:
        raw = self.cell(cells, "seller_tax_id")
        if raw in (None, ""):
            if self.default_seller and "seller_tax_id" not in self.columns:
                return self.default_seller
            self.issue("missing_value", number, "seller_tax_id")
            return None
        try:
            return self.intern(check_tax_id(cell_text(raw)))  # type: ignore[no-any-return]
        except ValueError as error:
            self.issue(str(error), number, "seller_tax_id", raw)
            return None

    def read_money(self, number: int, cells: tuple[Any, ...]) -> dict[str, Decimal | None]:
        amounts: dict[str, Decimal | None] = {}
        for column in MONEY_COLUMNS:
            raw = self.cell(cells, column)
            amounts[column] = None
            if raw in (None, ""):
                continue
            try:
                amounts[column] = parse_money(raw)
            except ValueError as error:
                self.issue(str(error), number, column, raw)
        if all(self.cell(cells, c) in (None, "") for c in ("amount", "total")):
            self.result.add(Issue("missing_amount", row=number))
        return amounts

    def remember(self, record: BookRecord) -> None:
        """Identical rows are refused; rows sharing a number with different facts are kept (a
        typing slip can hit another booked number) and noted, and matching sorts them out."""
        found = self.seen.find(record.key)
        if not found:
            self.result.records.append(record)
            self.seen.add(len(self.result.records) - 1)
            return
        earlier = self.result.records[found[0]]
        if _same_facts(earlier, record):
            self.issue("identical_row", record.row, "number", record.number, first=earlier.row)
            return
        self.shared_numbers.append(record.row)
        self.result.records.append(record)


def _same_facts(a: BookRecord, b: BookRecord) -> bool:
    fields = ("key", "issue_date", "seller_tax_id", "seller_name", "amount", "tax", "total")
    return all(getattr(a, name) == getattr(b, name) for name in fields)


class _HeaderRefused(Refused):
    def __init__(self) -> None:
        Exception.__init__(self, "header")
