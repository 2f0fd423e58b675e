"""Reading uploaded files: facts found, signatures checked, tampering named, bad input refused
in bounded time and memory."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from PIL import Image, ImageDraw, ImageFilter
from pypdf import PdfReader, PdfWriter

from piaotong.documents.invoice_xml import render_xml
from piaotong.documents.ofd import render_ofd
from piaotong.documents.pdf import render_pdf
from piaotong.documents.qrimage import qr_png
from piaotong.documents.reading import read_upload
from piaotong.lib.errors import RuleViolation

from .conftest import public_keys

pytestmark = pytest.mark.django_db


def refused(data: bytes, name: str = "upload") -> RuleViolation:
    started = time.monotonic()
    with pytest.raises(RuleViolation) as raised:
        read_upload(data, name, keys=public_keys)
    assert time.monotonic() - started < 5
    assert raised.value.text()
    return raised.value


@pytest.mark.parametrize("render", [render_xml, render_pdf, render_ofd])
def test_it_reads_and_verifies_every_format(signed, render):
    result = read_upload(render(signed), "invoice", keys=public_keys)
    assert result.signature_valid is True and result.mismatches == []
    assert result.is_authentic
    assert result.fields["number"] == signed.number
    assert result.fields["total_with_tax"] == "18009.97"
    assert result.fields["seller_tax_id"] == signed.payload["seller"]["tax_id"]
    assert result.fields["buyer_tax_id"] == signed.payload["buyer"]["tax_id"]
    assert result.fields["kind"] == "digital_special"
    assert (result.key_id, result.payload_hash) == (signed.key_id, signed.payload_hash)
    assert signed.qr_text in result.qr_texts and signed.signed_qr_text in result.qr_texts


def test_it_uses_the_key_registry_by_default(signed):
    result = read_upload(render_xml(signed), "invoice.xml")
    assert result.signature_valid is True


def test_an_unknown_key_leaves_the_signature_unchecked(signed):
    result = read_upload(render_xml(signed), "invoice.xml", keys=lambda key_id: None)
    assert result.signature_valid is None and not result.is_authentic


def test_it_names_the_fields_changed_in_an_xml(signed):
    text = render_xml(signed).decode()
    forged = text.replace(
        "<TotalTax-includedAmount>18009.97<", "<TotalTax-includedAmount>98009.97<"
    ).replace("<BuyerName>上海测试贸易有限公司<", "<BuyerName>别的公司<")
    result = read_upload(forged.encode(), "invoice.xml", keys=public_keys)
    assert result.signature_valid is True  # the payload itself is intact
    assert set(result.mismatches) == {"total_with_tax", "buyer_name"}
    assert not result.is_authentic


def test_it_detects_a_forged_payload(signed):
    import base64

    forged_payload = signed.payload_bytes.replace(b'"18009.97"', b'"98009.97"')
    text = (
        render_xml(signed)
        .decode()
        .replace(signed.payload_base64, base64.b64encode(forged_payload).decode())
    )
    result = read_upload(text.encode(), "invoice.xml", keys=public_keys)
    assert result.signature_valid is False
    assert "payload_hash" in result.mismatches


def test_it_names_text_changed_on_a_pdf_page(signed):
    data = render_pdf(signed)
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    page = writer.pages[0]
    content = page.get_contents()
    raw = content.get_data()
    # Replace the glyph run of the capital total's figures is hard; drop the page text instead.
    content.set_data(raw.replace(b"Tj", b"Tz"))
    page.replace_contents(content)
    out = io.BytesIO()
    writer.write(out)
    result = read_upload(out.getvalue(), "invoice.pdf", keys=public_keys)
    assert "page.total_with_tax" in result.mismatches and not result.is_authentic


def photo(png: bytes, angle: float, noise: bool = True, perspective: bool = True) -> bytes:
    """A phone photo of a printed QR code: on paper, rotated, warped, blurred and noisy."""
    code = Image.open(io.BytesIO(png)).convert("L").resize((600, 600), Image.NEAREST)
    paper = Image.new("L", (1400, 1100), 235)
    paper.paste(code, (380, 230))
    draw = ImageDraw.Draw(paper)
    draw.text((380, 900), "价税合计 ¥18009.97", fill=40)
    image = paper.rotate(angle, expand=True, fillcolor=90, resample=Image.BICUBIC)
    if perspective:
        w, h = image.size
        coeffs = (1.05, 0.08, -20, 0.03, 1.0, -10, 0.00005, 0.00002)
        image = image.transform((w, h), Image.PERSPECTIVE, coeffs, Image.BICUBIC, fillcolor=90)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    if noise:
        grain = Image.effect_noise(image.size, 25).convert("L")
        image = Image.blend(image, grain, 0.15)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


@pytest.mark.parametrize("angle", [0, 17, 90, 200, 333])
def test_it_reads_the_signed_qr_from_a_photo_at_an_angle(signed, angle):
    result = read_upload(photo(qr_png(signed.signed_qr_text), angle), "photo.jpg", keys=public_keys)
    assert result.format == "image"
    assert result.qr_texts == [signed.signed_qr_text]
    assert result.signature_valid is True and result.is_authentic
    assert result.fields["total_with_tax"] == "18009.97"
    assert result.key_id == signed.qr_key_id


def test_it_reads_an_official_qr_photo_without_signature(signed):
    result = read_upload(photo(qr_png(signed.qr_text), 8), "photo.png", keys=public_keys)
    assert result.signature_valid is None
    assert result.fields == {
        "number": signed.number,
        "issue_date": signed.payload["issue_date"],
        "kind_code": "31",
        "total_with_tax": "18009.97",
    }


def test_a_forged_signed_qr_fails_its_signature(signed):
    forged = signed.signed_qr_text.replace(",18009.97,", ",98009.97,")
    result = read_upload(qr_png(forged), "qr.png", keys=public_keys)
    assert result.signature_valid is False and not result.is_authentic


def test_official_and_signed_qr_that_disagree_are_named(signed):
    other = signed.qr_text.replace("18009.97", "18009.96")
    from piaotong.lib.qr import compose_digital_qr

    other = compose_digital_qr(
        "31", signed.number, signed.issue_date, __import__("decimal").Decimal("18009.96")
    )
    sheet = Image.new("L", (900, 450), 255)
    sheet.paste(Image.open(io.BytesIO(qr_png(other))).convert("L"), (10, 10))
    sheet.paste(Image.open(io.BytesIO(qr_png(signed.signed_qr_text))).convert("L"), (450, 10))
    out = io.BytesIO()
    sheet.save(out, "PNG")
    result = read_upload(out.getvalue(), "both.png", keys=public_keys)
    assert result.signature_valid is True
    assert result.mismatches == ["qr.total_with_tax"]


# --- bad input -------------------------------------------------------------------------------


def test_it_refuses_unknown_and_truncated_files(signed):
    assert refused(b"hello", "x.txt").code == "unknown_file_type"
    assert refused(render_pdf(signed)[:3000], "cut.pdf").code in {
        "pdf_unreadable",
        "pdf_no_invoice",
    }
    assert refused(render_xml(signed)[:500], "cut.xml").code == "xml_malformed"
    assert refused(render_ofd(signed)[:2000], "cut.ofd").code == "ofd_not_zip"
    png = qr_png(signed.qr_text)
    assert refused(png[: len(png) // 2], "cut.png").code == "image_unreadable"


def test_it_refuses_a_corrupt_pdf():
    junk = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nendobj\n" + b"\x00garbage" * 1000
    assert refused(junk, "bad.pdf").code in {"pdf_unreadable", "pdf_no_invoice"}


def test_it_refuses_xml_with_external_entities(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<EInvoice><Header><EIid>&x;</EIid></Header></EInvoice>"
    ).encode()
    violation = refused(xxe, "xxe.xml")
    assert violation.code == "xml_forbidden" and "TOP SECRET" not in violation.text()


def test_it_refuses_billion_laughs():
    entities = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
    )
    bomb = f'<?xml version="1.0"?><!DOCTYPE e [{entities}]><EInvoice>&l9;</EInvoice>'.encode()
    assert refused(bomb, "lol.xml").code == "xml_forbidden"


def test_it_refuses_xml_that_is_not_an_invoice():
    assert refused(b"<html><body>hi</body></html>", "page.xml").code == "xml_not_invoice"


def zip_of(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in entries.items():
            package.writestr(name, data)
    return out.getvalue()


def test_it_refuses_an_ofd_zip_bomb():
    bomb = zip_of({"OFD.xml": b"<a/>", "big.bin": b"\x00" * (30 * 1024 * 1024)})
    assert len(bomb) < 100_000
    assert refused(bomb, "bomb.ofd").code == "ofd_too_large"


def test_it_refuses_an_ofd_with_too_many_entries():
    many = zip_of({f"f{i}.xml": b"" for i in range(500)})
    assert refused(many, "many.ofd").code == "ofd_too_many_entries"


def test_it_refuses_an_ofd_whose_entry_lies_about_its_size(signed):
    data = bytearray(
        zip_of({"OFD.xml": b"<x/>" * 10, "Doc_0/big.bin": b"\x00" * (12 * 1024 * 1024)})
    )
    # Make both the local header and the central directory claim the big entry is tiny.
    for sig, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        start = 0
        while (start := data.find(sig, start)) != -1:
            if b"big.bin" in data[start : start + 80]:
                data[start + offset : start + offset + 4] = (100).to_bytes(4, "little")
            start += 4
    violation = refused(bytes(data), "liar.ofd")
    assert violation.code.startswith("ofd_")


def test_it_refuses_an_ofd_without_invoice():
    assert refused(zip_of({"OFD.xml": b"<not-ofd/>"}), "x.ofd").code == "ofd_structure"


def test_it_refuses_huge_images_before_decoding():
    header = io.BytesIO()
    Image.new("1", (10000, 10000)).save(header, "PNG")  # 100 megapixels, tiny file
    assert refused(header.getvalue(), "huge.png").code == "image_too_large"


def test_it_refuses_pictures_without_an_invoice_qr():
    plain = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(plain, "PNG")
    assert refused(plain.getvalue(), "white.png").code == "no_qr_code"
    other = qr_png("https://example.com/not-an-invoice")
    assert refused(other, "url.png").field == "qr"


def test_reading_writes_nothing(signed, django_assert_num_queries):
    data = render_pdf(signed)
    with django_assert_num_queries(0):
        read_upload(data, "invoice.pdf", keys=public_keys)
