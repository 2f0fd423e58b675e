"""The OFD of an invoice (GB/T 33190-2016): a zip of XML parts, written and read here.

Package layout written (the minimum the standard requires, plus an attachment):

- ``OFD.xml``: entry file, ``DocBody/DocInfo`` (title, dates, custom data) and ``DocRoot``
- ``Doc_0/Document.xml``: ``CommonData`` (``MaxUnitID``, ``PageArea``, ``PublicRes``,
  ``DocumentRes``), ``Pages`` and ``Attachments``
- ``Doc_0/PublicRes.xml``: the embedded font (``Res/font_<id>.ttf``, a fontTools subset)
- ``Doc_0/DocumentRes.xml``: the QR code pictures (``Res/*.png``)
- ``Doc_0/Pages/Page_<n>/Content.xml``: one layer of text, path and image objects, laid out
  by `piaotong.documents.layout` exactly as the PDF
- ``Doc_0/Attachs/Attachments.xml`` and ``Doc_0/Attachs/invoice.xml``: the signed invoice XML

Units are millimetres, origin top left. No package on PyPI ships the standard's XSD files, so
the structure is checked by reading it back (`read_ofd`) rather than against official schemas.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import Any

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from django.utils.translation import gettext_lazy as _
from lxml import etree

from piaotong.documents.content import SignedInvoice
from piaotong.documents.fonts import FONT_FAMILY, subset_ttf
from piaotong.documents.invoice_xml import render_xml
from piaotong.documents.layout import PAGE_H, PAGE_W, PT, Image, Line, Page, Rect, Text, lay_out
from piaotong.lib.errors import RuleViolation

NS = "http://www.ofdspec.org/2016"
NSP = "{%s}" % NS  # noqa: UP031 - the Clark-notation prefix
DOC = "Doc_0"
# Bounds for reading untrusted packages: a real invoice OFD is a few hundred kilobytes in
# about twenty entries; these leave room and stop zip bombs before they inflate.
MAX_ENTRIES = 200
MAX_TOTAL_BYTES = 20 * 1024 * 1024
MAX_ENTRY_BYTES = 10 * 1024 * 1024


class _Ids:
    def __init__(self) -> None:
        self.last = 0

    def next(self) -> str:
        self.last += 1
        return str(self.last)


def _el(parent: Any, tag: str, text: object = None, **attrs: object) -> Any:
    child = etree.SubElement(parent, NSP + tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        child.text = str(text)
    return child


def _root(tag: str, **attrs: object) -> Any:
    return etree.Element(NSP + tag, {k: str(v) for k, v in attrs.items()}, nsmap={"ofd": NS})


def _bytes(root: Any) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def render_ofd(invoice: SignedInvoice, xml: bytes | None = None) -> bytes:
    ids = _Ids()
    pages = lay_out(invoice)
    texts = "".join(op.text for page in pages for op in page.ops if isinstance(op, Text))
    font_id = ids.next()
    images: dict[str, tuple[str, bytes]] = {}
    for page in pages:
        for op in page.ops:
            if isinstance(op, Image) and op.name not in images:
                images[op.name] = (ids.next(), op.png)
    parts: dict[str, bytes] = {}
    page_ids = []
    for index, page in enumerate(pages):
        page_ids.append(ids.next())
        parts[f"{DOC}/Pages/Page_{index}/Content.xml"] = _content(page, ids, font_id, images)
    attachment_id = ids.next()
    parts["OFD.xml"] = _entry(invoice)
    parts[f"{DOC}/Document.xml"] = _document(ids.last, page_ids)
    parts[f"{DOC}/PublicRes.xml"] = _public_res(font_id)
    parts[f"{DOC}/DocumentRes.xml"] = _document_res(images)
    parts[f"{DOC}/Res/font_{font_id}.ttf"] = subset_ttf(texts)
    for name, (media_id, png) in images.items():
        parts[f"{DOC}/Res/{name}_{media_id}.png"] = png
    parts[f"{DOC}/Attachs/Attachments.xml"] = _attachments(attachment_id, invoice)
    parts[f"{DOC}/Attachs/invoice.xml"] = xml if xml is not None else render_xml(invoice)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in parts.items():
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            package.writestr(info, data)
    return out.getvalue()


def _entry(invoice: SignedInvoice) -> bytes:
    root = _root("OFD", Version="1.0", DocType="OFD")
    body = _el(root, "DocBody")
    info = _el(body, "DocInfo")
    _el(info, "DocID", invoice.payload_hash[:32])
    _el(info, "Title", f"{invoice.title} {invoice.number}")
    _el(info, "Author", invoice.payload["seller"]["name"])
    _el(info, "CreationDate", invoice.payload["issue_date"])
    _el(info, "Creator", "Piaotong")
    custom = _el(info, "CustomDatas")
    for name, value in (
        ("发票号码", invoice.number),
        ("开票日期", invoice.payload["issue_date"]),
        ("销售方纳税人识别号", invoice.payload["seller"]["tax_id"]),
        ("购买方纳税人识别号", invoice.payload["buyer"]["tax_id"]),
        ("合计金额", invoice.payload["total_amount"]),
        ("合计税额", invoice.payload["total_tax"]),
        ("价税合计", invoice.payload["total_with_tax"]),
    ):
        _el(custom, "CustomData", value, Name=name)
    _el(body, "DocRoot", f"{DOC}/Document.xml")
    return _bytes(root)


def _document(max_id: int, page_ids: list[str]) -> bytes:
    root = _root("Document")
    common = _el(root, "CommonData")
    _el(common, "MaxUnitID", max_id)
    area = _el(common, "PageArea")
    _el(area, "PhysicalBox", f"0 0 {_fmt(PAGE_W)} {_fmt(PAGE_H)}")
    _el(common, "PublicRes", "PublicRes.xml")
    _el(common, "DocumentRes", "DocumentRes.xml")
    pages = _el(root, "Pages")
    for index, page_id in enumerate(page_ids):
        _el(pages, "Page", ID=page_id, BaseLoc=f"Pages/Page_{index}/Content.xml")
    _el(root, "Attachments", "Attachs/Attachments.xml")
    return _bytes(root)


def _public_res(font_id: str) -> bytes:
    root = _root("Res", BaseLoc="Res")
    fonts = _el(root, "Fonts")
    font = _el(fonts, "Font", ID=font_id, FontName=FONT_FAMILY, FamilyName=FONT_FAMILY)
    _el(font, "FontFile", f"font_{font_id}.ttf")
    return _bytes(root)


def _document_res(images: dict[str, tuple[str, bytes]]) -> bytes:
    root = _root("Res", BaseLoc="Res")
    medias = _el(root, "MultiMedias")
    for name, (media_id, _png) in images.items():
        media = _el(medias, "MultiMedia", ID=media_id, Type="Image", Format="PNG")
        _el(media, "MediaFile", f"{name}_{media_id}.png")
    return _bytes(root)


def _attachments(attachment_id: str, invoice: SignedInvoice) -> bytes:
    root = _root("Attachments")
    attachment = _el(
        root,
        "Attachment",
        ID=attachment_id,
        Name="invoice.xml",
        Format="xml",
        CreationDate=invoice.payload["issue_date"],
        Visible="false",
    )
    _el(attachment, "FileLoc", "invoice.xml")
    return _bytes(root)


def _rgb(color: tuple[int, int, int]) -> str:
    return " ".join(str(c) for c in color)


def _content(page: Page, ids: _Ids, font_id: str, images: dict[str, tuple[str, bytes]]) -> bytes:
    root = _root("Page")
    layer = _el(_el(root, "Content"), "Layer", ID=ids.next())
    for op in page.ops:
        if isinstance(op, Text):
            size = op.size * PT
            box = f"{_fmt(op.x)} {_fmt(op.y - size)} {_fmt(PAGE_W - op.x)} {_fmt(size * 1.4)}"
            text = _el(
                layer, "TextObject", ID=ids.next(), Boundary=box, Font=font_id, Size=_fmt(size)
            )
            _el(text, "FillColor", Value=_rgb(op.color))
            _el(text, "TextCode", op.text, X="0", Y=_fmt(size))
        elif isinstance(op, Line | Rect):
            x, y, w, h, path = _path(op)
            obj = _el(
                layer,
                "PathObject",
                ID=ids.next(),
                Boundary=f"{_fmt(x)} {_fmt(y)} {_fmt(w)} {_fmt(h)}",
                LineWidth="0.25",
            )
            _el(obj, "StrokeColor", Value=_rgb(op.color))
            _el(obj, "AbbreviatedData", path)
        elif isinstance(op, Image):
            media_id = images[op.name][0]
            box = f"{_fmt(op.x)} {_fmt(op.y)} {_fmt(op.w)} {_fmt(op.h)}"
            _el(
                layer,
                "ImageObject",
                ID=ids.next(),
                Boundary=box,
                CTM=f"{_fmt(op.w)} 0 0 {_fmt(op.h)} 0 0",
                ResourceID=media_id,
            )
    return _bytes(root)


def _path(op: Line | Rect) -> tuple[float, float, float, float, str]:
    if isinstance(op, Rect):
        return (
            op.x,
            op.y,
            op.w,
            op.h,
            f"M 0 0 L {_fmt(op.w)} 0 L {_fmt(op.w)} {_fmt(op.h)} L 0 {_fmt(op.h)} C",
        )
    x, y = min(op.x1, op.x2), min(op.y1, op.y2)
    w, h = max(abs(op.x2 - op.x1), 0.1), max(abs(op.y2 - op.y1), 0.1)
    return (
        x,
        y,
        w,
        h,
        f"M {_fmt(op.x1 - x)} {_fmt(op.y1 - y)} L {_fmt(op.x2 - x)} {_fmt(op.y2 - y)}",
    )


# --- reading ---------------------------------------------------------------------------------


@dataclass
class OfdContent:
    """What an OFD package holds for verification: its attached invoice XML, page texts, images."""

    invoice_xml: bytes | None
    texts: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    custom_data: dict[str, str] = field(default_factory=dict)


def _bad_ofd(code: str, detail: str) -> RuleViolation:
    return RuleViolation(
        "file",
        code,
        _("The OFD file cannot be read: %(detail)s. Upload the OFD exactly as delivered."),
        {"detail": detail},
    )


def read_ofd(data: bytes) -> OfdContent:
    """Read an OFD package within fixed bounds (entries, sizes), or raise a `RuleViolation`."""
    try:
        package = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _bad_ofd("ofd_not_zip", "it is not a zip package (damaged or truncated)") from None
    with package:
        entries = _checked_entries(package)
        reader = _Reader(package, entries)
        entry = reader.xml("OFD.xml")
        doc_root = (entry.findtext(f"{NSP}DocBody/{NSP}DocRoot") or "").strip()
        if not doc_root:
            raise _bad_ofd("ofd_structure", "OFD.xml names no DocRoot")
        custom = {
            item.get("Name", ""): (item.text or "").strip()
            for item in entry.iterfind(
                f"{NSP}DocBody/{NSP}DocInfo/{NSP}CustomDatas/{NSP}CustomData"
            )
        }
        document = reader.xml(doc_root)
        base = posixpath.dirname(doc_root)
        content = OfdContent(invoice_xml=_attached_xml(reader, document, base), custom_data=custom)
        for page in document.iterfind(f"{NSP}Pages/{NSP}Page"):
            page_xml = reader.xml(posixpath.join(base, page.get("BaseLoc", "")))
            content.texts += [(t.text or "") for t in page_xml.iter(f"{NSP}TextCode")]
        for name in entries:
            if name.lower().endswith(".png"):
                content.images.append(reader.read(name))
        return content


def _checked_entries(package: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = package.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _bad_ofd(
            "ofd_too_many_entries", f"it has {len(infos)} entries (at most {MAX_ENTRIES})"
        )
    total = sum(info.file_size for info in infos)
    if total > MAX_TOTAL_BYTES:
        raise _bad_ofd(
            "ofd_too_large", f"it would unpack to {total} bytes (at most {MAX_TOTAL_BYTES})"
        )
    return {info.filename: info for info in infos}


class _Reader:
    def __init__(self, package: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo]) -> None:
        self.package, self.entries = package, entries
        self.read_total = 0

    def read(self, name: str) -> bytes:
        name = posixpath.normpath(name.lstrip("/"))
        if name not in self.entries:
            raise _bad_ofd("ofd_structure", f"the part {name[:80]} is missing")
        try:
            with self.package.open(self.entries[name]) as stream:
                # Never trust the declared size: read at most one byte past the limit.
                data = stream.read(MAX_ENTRY_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
            raise _bad_ofd("ofd_damaged", f"the part {name[:80]} is damaged") from None
        self.read_total += len(data)
        if len(data) > MAX_ENTRY_BYTES or self.read_total > MAX_TOTAL_BYTES:
            raise _bad_ofd("ofd_too_large", f"the part {name[:80]} unpacks beyond the limit")
        return data

    def xml(self, name: str) -> Any:
        try:
            return SafeET.fromstring(self.read(name), forbid_dtd=True)
        except (DefusedXmlException, SafeET.ParseError):
            raise _bad_ofd(
                "ofd_xml", f"the part {name[:80]} is not safe, well-formed XML"
            ) from None


def _attached_xml(reader: _Reader, document: Any, base: str) -> bytes | None:
    location = (document.findtext(f"{NSP}Attachments") or "").strip()
    if not location:
        return None
    path = posixpath.join(base, location)
    attachments = reader.xml(path)
    for attachment in attachments.iterfind(f"{NSP}Attachment"):
        if attachment.get("Name") == "invoice.xml":
            file_loc = (attachment.findtext(f"{NSP}FileLoc") or "").strip()
            return reader.read(posixpath.join(posixpath.dirname(path), file_loc))
    return None
