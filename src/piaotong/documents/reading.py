"""Reading uploaded invoice files: PDF, XML, OFD and pictures of QR codes.

`read_upload` finds the invoice facts in a file and checks what can be checked offline: the
signature over the payload signed at issue (XML, and the XML attached to PDF and OFD files),
the signed-payload QR code (pictures), and whether what the file *shows* (elements, page text,
QR codes) agrees with what was signed. It never writes anything.

Untrusted input is read within fixed bounds: file size, PDF pages, OFD entries and unpacked
bytes, image pixels (checked from the header before decoding); XML is parsed with DTDs
forbidden, so no external entity (XXE) or entity expansion (billion laughs) is ever resolved.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps, UnidentifiedImageError

from piaotong.documents.content import signed_fields
from piaotong.documents.invoice_xml import capitals, parse_xml
from piaotong.documents.ofd import read_ofd
from piaotong.documents.pdf import ATTACHMENT_NAME
from piaotong.documents.qrimage import decode_qr_texts
from piaotong.lib import signing
from piaotong.lib.errors import RuleViolation
from piaotong.lib.qr import (
    is_signed_payload,
    parse_qr,
    parse_signed_payload,
    signed_payload_message,
)

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40-megapixel photo; larger is refused before decoding
MAX_PDF_PAGES = 20
MAX_PDF_IMAGES = 10
DECODE_SIDE = 2400  # photos are scaled down to this before looking for QR codes

KeyLookup = Callable[[str], bytes | None]


@dataclass
class ReadResult:
    """The invoice facts found in one file and what the offline checks said.

    `fields` holds what the file shows (number, issue_date, seller_tax_id, buyer_tax_id,
    total_amount, total_tax, total_with_tax, kind, ...). `signature_valid` is True or False
    when a signature was found and its key is known, None otherwise. `mismatches` names the
    fields whose shown value differs from the signed one: a tampered file.
    """

    format: str
    fields: dict[str, str] = field(default_factory=dict)
    key_id: str = ""
    signature_valid: bool | None = None
    payload_hash: str = ""
    qr_texts: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    payload: dict[str, Any] | None = None

    @property
    def is_authentic(self) -> bool:
        return self.signature_valid is True and not self.mismatches


def registry_key(key_id: str) -> bytes | None:
    """The public key of `key_id` from the node key registry (ledger.SigningKey)."""
    from piaotong.ledger.models import SigningKey

    row = SigningKey.objects.filter(key_id=key_id).values_list("public_key", flat=True).first()
    return bytes(row) if row is not None else None


def read_upload(data: bytes, filename: str, keys: KeyLookup | None = None) -> ReadResult:
    """Read an uploaded invoice file, or raise a `RuleViolation` saying why it cannot be read."""
    lookup = keys or registry_key
    if len(data) > MAX_UPLOAD_BYTES:
        raise RuleViolation(
            "file",
            "file_too_large",
            _("The file has %(size)s bytes; invoice files are at most %(limit)s bytes."),
            {"size": len(data), "limit": MAX_UPLOAD_BYTES},
        )
    kind = detect_format(data, filename)
    reader = {"pdf": _read_pdf, "xml": _read_xml_file, "ofd": _read_ofd, "image": _read_image}[kind]
    return reader(data, lookup)


def detect_format(data: bytes, filename: str) -> str:
    head = data[:16].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "ofd"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return "image"
    if head.startswith(b"<"):
        return "xml"
    raise RuleViolation(
        "file",
        "unknown_file_type",
        _(
            "%(name)s is not a PDF, OFD, XML, PNG or JPEG file (judged by its content, not its "
            "name). Upload the invoice file as delivered, or a picture of its QR code."
        ),
        {"name": filename[:100] or "?"},
    )


# --- XML (and the XML inside PDF and OFD) ----------------------------------------------------


def _read_xml_file(data: bytes, lookup: KeyLookup) -> ReadResult:
    result = ReadResult("xml")
    _apply_xml(result, data, lookup)
    return result


def _apply_xml(result: ReadResult, data: bytes, lookup: KeyLookup) -> None:
    visible, signature, lines = parse_xml(data)
    result.fields = {k: v for k, v in visible.items() if v}
    result.key_id = signature["key_id"]
    result.payload_hash = signature["payload_hash"]
    for name in ("qr_text", "signed_qr_text"):
        if signature[name]:
            result.qr_texts.append(signature[name])
    if not signature["payload"]:
        return
    try:
        payload_bytes = base64.b64decode(signature["payload"], validate=True)
        payload = orjson.loads(payload_bytes)
    except (binascii.Error, orjson.JSONDecodeError):
        result.signature_valid = False
        result.mismatches.append("payload")
        return
    result.payload = payload
    result.fields["kind"] = str(payload.get("kind", ""))
    if hashlib.sha256(payload_bytes).hexdigest() != result.payload_hash:
        result.mismatches.append("payload_hash")
    public_key = lookup(result.key_id) if result.key_id else None
    if public_key is not None:
        result.signature_valid = signing.verify(public_key, payload_bytes, signature["signature"])
    result.mismatches += _differences(visible, lines, payload)
    _check_qr_texts(result, payload, lookup)


def _differences(
    visible: dict[str, str], lines: list[dict[str, str]], payload: dict[str, Any]
) -> list[str]:
    signed = expected_visible(payload)
    differing = [name for name, value in signed.items() if visible.get(name, "") != value]
    if len(lines) != len(payload.get("lines", [])):
        differing.append("lines")
        return differing
    for index, (shown, line) in enumerate(zip(lines, payload["lines"], strict=True), start=1):
        for element, key in (
            ("ItemName", "name"),
            ("Amount", "amount"),
            ("ComTaxAm", "tax"),
            ("TaxRate", "tax_rate"),
            ("Quantity", "quantity"),
            ("UnPrice", "unit_price"),
        ):
            if shown[element] != str(line.get(key) or ""):
                differing.append(f"lines.{index}.{key}")
    return differing


def expected_visible(payload: dict[str, Any]) -> dict[str, str]:
    """The visible facts a document of this payload must show, by `ReadResult.fields` names."""
    return {
        "number": str(payload["number"]),
        "issue_date": str(payload["issue_date"]),
        "seller_tax_id": str(payload["seller"]["tax_id"]),
        "seller_name": str(payload["seller"]["name"]),
        "buyer_tax_id": str(payload["buyer"]["tax_id"]),
        "buyer_name": str(payload["buyer"]["name"]),
        "total_amount": str(payload["total_amount"]),
        "total_tax": str(payload["total_tax"]),
        "total_with_tax": str(payload["total_with_tax"]),
        "total_in_capitals": capitals(str(payload["total_with_tax"])),
        "issuer": str(payload["issuer"]),
        "remarks": str(payload["remarks"]),
    }


def _check_qr_texts(result: ReadResult, payload: dict[str, Any], lookup: KeyLookup) -> None:
    """QR codes shown by the document must carry the signed facts."""
    signed = signed_fields(payload, result.payload_hash)
    for text in result.qr_texts:
        facts, valid = qr_facts(text, lookup)
        if valid is False:
            _add(result, "signed_qr")
        for name, value in facts.items():
            if name in signed and signed[name] != value:
                _add(result, f"qr.{name}")


def _add(result: ReadResult, name: str) -> None:
    if name not in result.mismatches:
        result.mismatches.append(name)


def qr_facts(text: str, lookup: KeyLookup) -> tuple[dict[str, str], bool | None]:
    """The facts of one QR text (official or signed) and, for signed ones, the signature check."""
    if is_signed_payload(text):
        fields, key_id, signature = parse_signed_payload(text)
        public_key = lookup(key_id)
        valid = (
            None
            if public_key is None
            else signing.verify(public_key, signed_payload_message(fields), signature)
        )
        return {**fields, "key_id": key_id}, valid
    data = parse_qr(text, verify_check=True)
    facts = {
        "number": data.number,
        "issue_date": data.issue_date.isoformat(),
        "kind_code": data.kind_code,
    }
    if data.is_digital:
        facts["total_with_tax"] = str(data.amount)
    else:
        facts["invoice_code"] = data.invoice_code
        facts["total_amount"] = str(data.amount)
    return facts, None


# --- PDF -------------------------------------------------------------------------------------


def _bad_pdf(detail: str) -> RuleViolation:
    return RuleViolation(
        "file",
        "pdf_unreadable",
        _("The PDF cannot be read: %(detail)s. Upload the PDF exactly as delivered."),
        {"detail": detail},
    )


def _read_pdf(data: bytes, lookup: KeyLookup) -> ReadResult:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    result = ReadResult("pdf")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if len(reader.pages) > MAX_PDF_PAGES:
                raise _bad_pdf(
                    f"it has {len(reader.pages)} pages; an invoice has at most {MAX_PDF_PAGES}"
                )
            attachments = reader.attachments
            page_text = "".join(page.extract_text() or "" for page in reader.pages[:MAX_PDF_PAGES])
            images = _pdf_images(reader)
    except RuleViolation:
        raise
    except (
        PyPdfError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
        RecursionError,
        AssertionError,
        ZeroDivisionError,
    ) as error:
        raise _bad_pdf(f"it is damaged or truncated ({type(error).__name__})") from None
    xml = attachments.get(ATTACHMENT_NAME)
    qr_texts = [text for image in images for text in decode_qr_texts(image)]
    if xml:
        _apply_xml(result, xml[0], lookup)
        for text in qr_texts:
            if text not in result.qr_texts:
                result.qr_texts.append(text)
        if result.payload is not None:
            _check_qr_texts(result, result.payload, lookup)
            _check_page_text(result, page_text, result.payload)
        return result
    if not qr_texts:
        raise RuleViolation(
            "file",
            "pdf_no_invoice",
            _(
                "The PDF holds neither an invoice XML attachment nor an invoice QR code, so it "
                "cannot be checked. Upload the XML or OFD file, or type the invoice's fields."
            ),
        )
    _apply_qr_texts(result, qr_texts, lookup)
    return result


def _pdf_images(reader: Any) -> list[Image.Image]:
    """Pictures of the first pages, size checked from their dictionaries before decoding."""
    images: list[Image.Image] = []
    for page in reader.pages[:2]:
        resources: Any = page.get("/Resources")
        xobjects: Any = resources.get_object().get("/XObject") if resources else None
        if not xobjects:
            continue
        for ref in list(xobjects.values())[:MAX_PDF_IMAGES]:
            obj = ref.get_object()
            if obj.get("/Subtype") != "/Image":
                continue
            width, height = int(obj.get("/Width", 0)), int(obj.get("/Height", 0))
            if width * height > MAX_PIXELS:
                raise _bad_pdf(f"it holds a {width}×{height} picture, too large to be an invoice")
            images.append(obj.decode_as_image())
    return images


def _check_page_text(result: ReadResult, text: str, payload: dict[str, Any]) -> None:
    """The page must print the signed number, tax ids and totals."""
    compact = "".join(text.split())
    for name in (
        "number",
        "seller_tax_id",
        "buyer_tax_id",
        "total_amount",
        "total_tax",
        "total_with_tax",
    ):
        value = expected_visible(payload)[name]
        if value and value not in compact:
            _add(result, f"page.{name}")


# --- OFD -------------------------------------------------------------------------------------


def _read_ofd(data: bytes, lookup: KeyLookup) -> ReadResult:
    content = read_ofd(data)
    result = ReadResult("ofd")
    qr_texts = [text for png in content.images for text in _qr_texts_of(png)]
    if content.invoice_xml is not None:
        _apply_xml(result, content.invoice_xml, lookup)
        for text in qr_texts:
            if text not in result.qr_texts:
                result.qr_texts.append(text)
        if result.payload is not None:
            _check_qr_texts(result, result.payload, lookup)
            _check_page_text(result, "".join(content.texts), result.payload)
        return result
    if not qr_texts:
        raise RuleViolation(
            "file",
            "ofd_no_invoice",
            _("The OFD holds neither an invoice XML attachment nor an invoice QR code."),
        )
    _apply_qr_texts(result, qr_texts, lookup)
    return result


def _qr_texts_of(png: bytes) -> list[str]:
    try:
        return decode_qr_texts(_open_image(png))
    except RuleViolation:
        return []


# --- pictures --------------------------------------------------------------------------------


def _open_image(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # We check the size ourselves, below Pillow's own bomb limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        width, height = opened.size  # from the header; nothing is decoded yet
        if width * height > MAX_PIXELS:
            raise _too_large(width, height)
        image = ImageOps.exif_transpose(opened)
        image.load()
    except RuleViolation:
        raise
    except Image.DecompressionBombError:
        raise _too_large(0, 0) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise RuleViolation(
            "file",
            "image_unreadable",
            _("The picture cannot be read: it is damaged, truncated or not a PNG or JPEG."),
        ) from None
    if max(image.size) > DECODE_SIDE:
        image.thumbnail((DECODE_SIDE, DECODE_SIDE))
    return image.convert("L")


def _too_large(width: int, height: int) -> RuleViolation:
    return RuleViolation(
        "file",
        "image_too_large",
        _(
            "The picture has %(width)s×%(height)s pixels; at most %(limit)s are read. "
            "Crop it to the QR code or take a smaller photo."
        ),
        {"width": width, "height": height, "limit": MAX_PIXELS},
    )


def _read_image(data: bytes, lookup: KeyLookup) -> ReadResult:
    texts = decode_qr_texts(_open_image(data))
    if not texts:
        raise RuleViolation(
            "file",
            "no_qr_code",
            _(
                "No QR code was found in the picture. Photograph the invoice's QR code straight "
                "on, in focus and filling a good part of the picture."
            ),
        )
    result = ReadResult("image")
    _apply_qr_texts(result, texts, lookup)
    return result


def _apply_qr_texts(result: ReadResult, texts: list[str], lookup: KeyLookup) -> None:
    """Facts from QR codes alone: the signed QR is checked, the official one compared with it."""
    result.qr_texts = list(texts)
    official: dict[str, str] = {}
    signed: dict[str, str] = {}
    last_error: RuleViolation | None = None
    for text in texts:
        try:
            facts, valid = qr_facts(text, lookup)
        except RuleViolation as error:
            last_error = error
            continue
        if "payload_hash" in facts:
            signed = facts
            result.key_id = facts.pop("key_id")
            result.payload_hash = facts["payload_hash"]
            result.signature_valid = valid
        else:
            official = facts
    if not official and not signed:
        if last_error is not None:
            raise last_error
        raise RuleViolation(
            "file",
            "no_invoice_qr",
            _("The QR code in the picture is not an invoice QR code."),
        )
    result.fields = {**official, **signed}
    if official and signed:
        for name, value in official.items():
            if name in signed and signed[name] != value:
                _add(result, f"qr.{name}")
