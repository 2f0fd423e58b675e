"""The PDF of an invoice: the shared layout drawn with reportlab, font embedded, XML attached.

The font is embedded as a TrueType subset (reportlab does it for every TTF), so the PDF shows
and extracts the same text on any machine. The invoice XML with the signed payload is attached
as ``invoice.xml``, so the PDF can be checked offline without its QR codes.
"""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter
from reportlab import rl_config
from reportlab.lib.colors import Color
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from piaotong.documents.content import SignedInvoice
from piaotong.documents.fonts import pdf_font
from piaotong.documents.invoice_xml import render_xml
from piaotong.documents.layout import PAGE_H, PAGE_W, Image, Line, Page, Text, lay_out

ATTACHMENT_NAME = "invoice.xml"

# Streams are written as binary (Flate only) instead of ASCII85 text on top of Flate: reportlab's
# ASCII85 encoder runs in pure Python without the optional rl-accel extension, and took a quarter
# of the drawing time while making the file a quarter larger (docs/benchmarks.md). A reportlab
# setting for the process: this module is the project's only user of reportlab.
rl_config.useA85 = 0


def render_pdf(invoice: SignedInvoice, xml: bytes | None = None) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=(PAGE_W * mm, PAGE_H * mm), invariant=True, pageCompression=1)
    canvas.setTitle(f"{invoice.title} {invoice.number}")
    canvas.setSubject(invoice.qr_text)
    canvas.setKeywords(f"payload_hash={invoice.payload_hash} key_id={invoice.key_id}")
    canvas.setCreator("Piaotong 票通")
    canvas.setAuthor(str(invoice.payload["seller"]["name"]))
    images: dict[bytes, ImageReader] = {}
    for page in lay_out(invoice):
        _draw(canvas, page, images)
        canvas.showPage()
    canvas.save()
    return _attach(out.getvalue(), xml if xml is not None else render_xml(invoice))


def _color(rgb: tuple[int, int, int]) -> Color:
    return Color(rgb[0] / 255, rgb[1] / 255, rgb[2] / 255)


def _draw(canvas: Canvas, page: Page, images: dict[bytes, ImageReader]) -> None:
    """The page's shapes as they come, then all its text in one text object (BT ... ET): one
    object instead of one per string, and the colour and size set only when they change.
    Text never overlaps the shapes it sits among, so drawing it last changes nothing seen."""
    canvas.setLineWidth(0.7)
    stroke: tuple[int, int, int] | None = None
    texts: list[Text] = []
    for op in page.ops:
        if isinstance(op, Text):
            texts.append(op)
            continue
        if isinstance(op, Image):
            reader = images.setdefault(op.png, ImageReader(io.BytesIO(op.png)))
            canvas.drawImage(reader, op.x * mm, (PAGE_H - op.y - op.h) * mm, op.w * mm, op.h * mm)
            continue
        if op.color != stroke:
            canvas.setStrokeColor(_color(op.color))
            stroke = op.color
        if isinstance(op, Line):
            canvas.line(op.x1 * mm, (PAGE_H - op.y1) * mm, op.x2 * mm, (PAGE_H - op.y2) * mm)
        else:
            canvas.rect(op.x * mm, (PAGE_H - op.y - op.h) * mm, op.w * mm, op.h * mm)
    _draw_texts(canvas, texts)


def _draw_texts(canvas: Canvas, texts: list[Text]) -> None:
    font = pdf_font()
    writer = canvas.beginText()
    fill: tuple[int, int, int] | None = None
    size: float | None = None
    for op in texts:
        if op.color != fill:
            writer.setFillColor(_color(op.color))
            fill = op.color
        if op.size != size:
            writer.setFont(font, op.size)
            size = op.size
        writer.setTextOrigin(op.x * mm, (PAGE_H - op.y) * mm)
        writer.textOut(op.text)
    canvas.drawText(writer)


def _attach(pdf: bytes, xml: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.add_attachment(ATTACHMENT_NAME, xml)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
