"""Cells for CSV and spreadsheet exports that cannot turn into formulas (公式注入).

A cell starting with = + - @ (or a tab or carriage return) is run as a formula by Excel and
WPS when the file is opened; such cells are prefixed with an apostrophe, which the spreadsheet
shows as plain text.

>>> safe_cell("=HYPERLINK(\\"http://evil\\")")
'\\'=HYPERLINK("http://evil")'
>>> safe_cell("北京云帆")
'北京云帆'
>>> safe_cell(Decimal("-12.00"))
'-12.00'
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """Numbers stay as typed; text that would start a formula is neutralised."""
    if value is None:
        return ""
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """CSV text line by line (for streaming responses), with a BOM so Excel reads UTF-8.

    >>> "".join(csv_lines(["名称"], [["=1+1"]]))
    "\\ufeff名称\\r\\n'=1+1\\r\\n"
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Iterable[Any]) -> str:
        writer.writerow([safe_cell(c) for c in cells])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield "\ufeff" + line(header)
    for row in rows:
        yield line(row)
