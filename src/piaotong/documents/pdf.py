"""The PDF of an invoice: the shared layout drawn with reportlab, font embedded, XML attached.

The font is embedded as a TrueType subset (reportlab does it for every TTF), so the PDF shows
and extracts the same text on any machine. The invoice XML with the signed payload is attached
as ``invoice.xml``, so the PDF can be checked offline without its QR codes.
"""

from __future__ import annotations

import io

from pypdf import PdfReader, PdfWriter
from reportlab.lib.colors import Color
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from piaotong.documents.content import SignedInvoice
from piaotong.documents.fonts import pdf_font
from piaotong.documents.invoice_xml import render_xml
from piaotong.documents.layout import PAGE_H, PAGE_W, Image, Line, Page, Rect, Text, lay_out

ATTACHMENT_NAME = "invoice.xml"


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
    font = pdf_font()
    canvas.setLineWidth(0.7)
    for op in page.ops:
        if isinstance(op, Text):
            canvas.setFillColor(_color(op.color))
            canvas.setFont(font, op.size)
            canvas.drawString(op.x * mm, (PAGE_H - op.y) * mm, op.text)
        elif isinstance(op, Line):
            canvas.setStrokeColor(_color(op.color))
            canvas.line(op.x1 * mm, (PAGE_H - op.y1) * mm, op.x2 * mm, (PAGE_H - op.y2) * mm)
        elif isinstance(op, Rect):
            canvas.setStrokeColor(_color(op.color))
            canvas.rect(op.x * mm, (PAGE_H - op.y - op.h) * mm, op.w * mm, op.h * mm)
        elif isinstance(op, Image):
            reader = images.setdefault(op.png, ImageReader(io.BytesIO(op.png)))
            canvas.drawImage(reader, op.x * mm, (PAGE_H - op.y - op.h) * mm, op.w * mm, op.h * mm)


def _attach(pdf: bytes, xml: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.add_attachment(ATTACHMENT_NAME, xml)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
