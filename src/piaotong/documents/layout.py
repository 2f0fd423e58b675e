"""The page layout of an invoice as drawing operations, shared by the PDF and OFD writers.

Coordinates are millimetres from the top-left corner (OFD's own convention); text sizes are
points. Laying out once and drawing twice keeps the PDF and the OFD the same document.

The page follows the real 电子发票: title, QR code top left, number and date top right, buyer
(购买方) and seller (销售方) blocks, the line table (项目名称 ... 税额), 合计, 价税合计 in capitals
and figures, remarks (备注) with the signed-payload QR code, and the issuer (开票人). A
red-letter invoice (红字发票) is marked 红字 and names the blue invoice it reverses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reportlab.pdfbase.pdfmetrics import stringWidth

from piaotong.documents.content import SignedInvoice
from piaotong.documents.fonts import pdf_font
from piaotong.documents.invoice_xml import capitals
from piaotong.documents.qrimage import qr_png
from piaotong.lib.money import RATES

PAGE_W, PAGE_H = 241.0, 150.0
PT = 25.4 / 72  # millimetres per point
BLACK, FRAME, RED = (0, 0, 0), (139, 69, 19), (204, 26, 26)  # frame: the brown of 数电票
LINES_PER_PAGE = 8
COLUMNS = (  # (title, width mm, alignment)
    ("项目名称", 78, "l"),
    ("规格型号", 24, "l"),
    ("单位", 12, "c"),
    ("数量", 20, "r"),
    ("单价", 24, "r"),
    ("金额", 25, "r"),
    ("税率/征收率", 18, "c"),
    ("税额", 24, "r"),
)
LEFT, TOP, WIDTH = 8.0, 8.0, PAGE_W - 16.0
Color = tuple[int, int, int]


@dataclass(frozen=True)
class Text:
    x: float  # left edge of the text, mm
    y: float  # baseline, mm from the top
    text: str
    size: float  # points
    color: Color = BLACK


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    color: Color = FRAME


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    color: Color = FRAME


@dataclass(frozen=True)
class Image:
    x: float
    y: float
    w: float
    h: float
    png: bytes
    name: str


@dataclass
class Page:
    ops: list[Text | Line | Rect | Image] = field(default_factory=list)

    def text(
        self, x: float, y: float, text: str, size: float = 9, align: str = "l", color: Color = BLACK
    ) -> None:
        width = text_width(text, size)
        left = {"l": x, "r": x - width, "c": x - width / 2}[align]
        self.ops.append(Text(left, y, text, size, color))

    def line(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self.ops.append(Line(x1, y1, x2, y2))

    def rect(self, x: float, y: float, w: float, h: float) -> None:
        self.ops.append(Rect(x, y, w, h))


def text_width(text: str, size: float) -> float:
    """Width in mm of `text` at `size` points in the embedded font."""
    return float(stringWidth(text, pdf_font(), size)) * PT


def fit(text: str, width: float, size: float) -> str:
    """`text` cut to `width` mm, with an ellipsis when cut."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text + "…"


def lay_out(invoice: SignedInvoice) -> list[Page]:
    lines = invoice.payload["lines"]
    chunks = [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)] or [[]]
    qr = Image(LEFT, TOP, 24, 24, qr_png(invoice.qr_text, scale=4), "qr")
    signed = qr_png(invoice.signed_qr_text, scale=3)
    pages = []
    for index, chunk in enumerate(chunks, start=1):
        page = Page()
        page.ops.append(qr)
        _head(page, invoice, index, len(chunks))
        y = _parties(page, invoice.payload, TOP + 27)
        y = _table(page, chunk, y)
        y = _totals(page, invoice.payload, y, last=index == len(chunks))
        _remarks(page, invoice, y, signed)
        pages.append(page)
    return pages


def _head(page: Page, invoice: SignedInvoice, index: int, pages: int) -> None:
    page.text(PAGE_W / 2, TOP + 9, invoice.title, 16, "c", FRAME)
    page.line(PAGE_W / 2 - 45, TOP + 11, PAGE_W / 2 + 45, TOP + 11)
    if invoice.is_red:
        page.text(PAGE_W / 2, TOP + 18, "红字", 14, "c", RED)
    right = LEFT + WIDTH - 62
    issued = invoice.issue_date
    page.text(right, TOP + 8, f"发票号码：{invoice.number}")
    page.text(right, TOP + 14, f"开票日期：{issued.year}年{issued.month:02d}月{issued.day:02d}日")
    if pages > 1:
        page.text(right, TOP + 20, f"第 {index} 页 共 {pages} 页", 8)


def _parties(page: Page, p: dict[str, Any], top: float) -> float:
    height = 22.0
    page.rect(LEFT, top, WIDTH, height)
    middle = LEFT + WIDTH / 2
    page.line(middle, top, middle, top + height)
    for x, label, party in ((LEFT, "购买方信息", p["buyer"]), (middle, "销售方信息", p["seller"])):
        page.line(x + 7, top, x + 7, top + height)
        for i, char in enumerate(label):
            page.text(x + 3.5, top + 4.5 + i * 3.6, char, 8, "c", FRAME)
        width = WIDTH / 2 - 10
        page.text(x + 9, top + 7, fit(f"名称：{party['name']}", width, 9))
        page.text(x + 9, top + 13, f"统一社会信用代码/纳税人识别号：{party['tax_id']}", 8)
        extra = " ".join(v for v in (party.get("address", ""), party.get("bank", "")) if v)
        if extra:
            page.text(x + 9, top + 19, fit(extra, width, 7), 7)
    return top + height


def _table(page: Page, lines: Sequence[dict[str, Any]], top: float) -> float:
    row = 5.0
    height = row * (LINES_PER_PAGE + 1)
    page.rect(LEFT, top, WIDTH, height)
    x: float = LEFT
    positions: list[tuple[float, float, str]] = []
    for title, width, align in COLUMNS:
        positions.append((x, float(width), align))
        page.text(x + width / 2, top + 3.6, title, 8, "c", FRAME)
        x += width
    for index, line in enumerate(lines, start=1):
        y = top + row * index + 3.6
        rate = RATES.get(line["tax_rate"])
        values = (
            line["name"],
            line["spec"],
            line["unit"],
            line["quantity"] or "",
            line["unit_price"] or "",
            line["amount"],
            rate.label_zh if rate else line["tax_rate"],
            line["tax"],
        )
        for (cx, cw, align), value in zip(positions, values, strict=True):
            anchor = {"l": cx + 1, "r": cx + cw - 1, "c": cx + cw / 2}[align]
            page.text(anchor, y, fit(str(value), cw - 2, 8), 8, align)
    return top + height


def _totals(page: Page, p: dict[str, Any], top: float, last: bool) -> float:
    row = 6.0
    page.rect(LEFT, top, WIDTH, 2 * row)
    page.line(LEFT, top + row, LEFT + WIDTH, top + row)
    page.text(LEFT + 29, top + 4.2, "合　　计", 9, "c", FRAME)
    page.text(LEFT + 2, top + row + 4.2, "价税合计（大写）", 9, "l", FRAME)
    if last:
        amount_right = LEFT + sum(w for _, w, _ in COLUMNS[:6]) - 1
        page.text(amount_right, top + 4.2, f"¥{p['total_amount']}", 9, "r")
        page.text(LEFT + WIDTH - 1, top + 4.2, f"¥{p['total_tax']}", 9, "r")
        page.text(LEFT + 32, top + row + 4.2, f"⊗ {capitals(p['total_with_tax'])}")
        page.text(LEFT + WIDTH - 50, top + row + 4.2, f"（小写）¥{p['total_with_tax']}")
    return top + 2 * row


def _remarks(page: Page, invoice: SignedInvoice, top: float, signed_png: bytes) -> None:
    height = 22.0
    page.rect(LEFT, top, WIDTH, height)
    page.line(LEFT + 7, top, LEFT + 7, top + height)
    for i, char in enumerate("备注"):
        page.text(LEFT + 3.5, top + 9 + i * 5, char, 9, "c", FRAME)
    remarks = [f"被红冲蓝字数电发票号码：{invoice.blue_number}"] if invoice.is_red else []
    remarks += [part for part in str(invoice.payload["remarks"]).splitlines() if part]
    for i, text in enumerate(remarks[:4]):
        page.text(LEFT + 9, top + 4.5 + i * 4, fit(text, WIDTH - 45, 8), 8)
    page.ops.append(Image(LEFT + WIDTH - 21, top + 1, 20, 20, signed_png, "signed_qr"))
    page.text(LEFT + WIDTH - 22, top + 20, "离线验签码", 6, "r")
    page.text(LEFT, top + height + 5, f"开票人：{invoice.payload['issuer']}")
    reviewer = invoice.payload.get("reviewer")
    if reviewer:
        page.text(LEFT + 60, top + height + 5, f"复核人：{reviewer}")
