"""Invoice documents: PDF rendering rate per core and QR decoding time per photo.

    python bench/documents.py [--seconds 10]

Metrics (one process, one core; no database: rendering works from the signed payload). Rates
are per CPU second of this process (`time.process_time`), i.e. per core: the machine is shared,
and the wall-clock rate (reported beside it as wall_per_s) drops with the other work on it while
the CPU a document costs does much less.
- raw_pdf_per_s (baseline): reportlab writing a one-page PDF with one line of CJK text in the
  same embedded font, nothing else.
- pdf_per_s: documents.pdf.render_pdf of a five-line invoice (layout, two QR codes, XML
  attached with pypdf). Target >= 20/s per core.
- xml_per_s and ofd_per_s, for the record. Also the peak RSS of the process after each.
- ofd_font_subset_ms: documents.fonts.subset_ttf of the invoice's text (the OFD's embedded
  font, built from the font parsed once per process); baseline fonttools_subset_ms: the same
  subset made by fontTools' general subsetter, as every OFD did before (it parses the whole
  font each time).
- qr_clean_ms (baseline): reading_upload of a clean PNG of the signed QR code.
- qr_photo_ms: read_upload of a 1400x1100 JPEG "photo" of the printed signed QR code
  (rotated 17°, perspective-warped, blurred, noisy), signature checked. Target <= 50 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "piaotong.settings")
    import django

    django.setup()


def rate(func, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """Calls per CPU second of this process, over `seconds` of wall time."""
    return rates(func, seconds)[0]


def rates(func, seconds: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(calls per CPU second, calls per wall second) over `seconds` of wall time."""
    func()  # warm up: fonts, caches
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        func()
        count += 1
    return count / (time.process_time() - cpu), count / (time.perf_counter() - start)


class Signer:
    def __init__(self) -> None:
        from piaotong.lib import signing

        self.private_key = signing.generate_private_key()
        self.key_id = signing.key_id(signing.public_key_bytes(self.private_key))

    def sign(self, data: bytes) -> str:
        from piaotong.lib import signing

        return signing.sign(self.private_key, data)


def invoice(signer: Signer):  # type: ignore[no-untyped-def]
    from piaotong.documents.content import build_signed_invoice
    from piaotong.lib.canonical import canonical_json

    lines = [
        {
            "position": i,
            "kind": 0,
            "tax_code": "3040201030000000000",
            "name": f"*信息技术服务*软件维护费{i}",
            "spec": "V2",
            "unit": "次",
            "quantity": "2",
            "unit_price": "500",
            "amount": "1000.00",
            "tax_rate": "0.06",
            "tax": "60.00",
        }
        for i in range(1, 6)
    ]
    payload = {
        "schema": "piaotong.invoice",
        "version": 1,
        "number": "26112000000000000042",
        "kind": "digital_special",
        "platform_kind": "81",
        "issue_date": "2026-01-05",
        "seller": {
            "name": "北京基准测试有限公司",
            "tax_id": "91110108MA01BNCH1X",
            "address": "北京市海淀区",
            "bank": "",
        },
        "buyer": {
            "kind": "organisation",
            "name": "上海基准测试有限公司",
            "tax_id": "91310115MA1BNCH22",
            "address": "",
            "bank": "",
        },
        "lines": lines,
        "total_amount": "5000.00",
        "total_tax": "300.00",
        "total_with_tax": "5300.00",
        "remarks": "合同号 BENCH-1",
        "issuer": "张三",
        "reviewer": "",
    }
    return build_signed_invoice(
        payload, signer.sign(canonical_json(payload)), signer.key_id, "", signer
    )


def raw_pdf() -> bytes:
    from reportlab.pdfgen.canvas import Canvas

    from piaotong.documents.fonts import pdf_font

    out = io.BytesIO()
    canvas = Canvas(out, invariant=True)
    canvas.setFont(pdf_font(), 12)
    canvas.drawString(50, 700, "电子发票（增值税专用发票） 26112000000000000042")
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def photo(png: bytes) -> bytes:
    from PIL import Image, ImageFilter

    code = Image.open(io.BytesIO(png)).convert("L").resize((600, 600), Image.NEAREST)
    paper = Image.new("L", (1400, 1100), 235)
    paper.paste(code, (380, 230))
    image = paper.rotate(17, expand=True, fillcolor=90, resample=Image.BICUBIC)
    w, h = image.size
    coeffs = (1.05, 0.08, -20, 0.03, 1.0, -10, 0.00005, 0.00002)
    image = image.transform((w, h), Image.PERSPECTIVE, coeffs, Image.BICUBIC, fillcolor=90)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    image = Image.blend(image, Image.effect_noise(image.size, 25).convert("L"), 0.15)
    image = image.resize((1400, 1100))
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    seconds = parser.parse_args().seconds
    setup()
    from piaotong.documents.invoice_xml import render_xml
    from piaotong.documents.ofd import render_ofd
    from piaotong.documents.pdf import render_pdf
    from piaotong.documents.qrimage import qr_png
    from piaotong.documents.reading import read_upload

    signer = Signer()
    signed = invoice(signer)
    from piaotong.lib import signing

    public = signing.public_key_bytes(signer.private_key)

    def keys(key_id: str) -> bytes | None:
        return public if key_id == signer.key_id else None

    emit(bench="documents", metric="machine", **machine())
    raw = rate(raw_pdf, seconds)
    pdf, pdf_wall = rates(lambda: render_pdf(signed), seconds)
    emit(
        bench="documents",
        metric="pdf_per_s",
        value=round(pdf, 1),
        unit="1/s per core",
        wall_per_s=round(pdf_wall, 1),
        load=round(os.getloadavg()[0], 2),
        baseline="raw_pdf_per_s",
        baseline_value=round(raw, 1),
        ratio=round(pdf / raw, 3),
        target=">= 20/s per core",
        ok=pdf >= 20,
    )
    emit(
        bench="documents",
        metric="xml_per_s",
        value=round(rate(lambda: render_xml(signed), seconds / 2), 1),
        unit="1/s",
    )
    ofd, ofd_wall = rates(lambda: render_ofd(signed), seconds / 2)
    emit(
        bench="documents",
        metric="ofd_per_s",
        value=round(ofd, 1),
        unit="1/s per core",
        wall_per_s=round(ofd_wall, 1),
    )
    from piaotong.documents.fonts import subset_ttf, subset_ttf_with_fonttools
    from piaotong.documents.layout import Text, lay_out

    text = "".join(op.text for page in lay_out(signed) for op in page.ops if isinstance(op, Text))
    general_ms = 1000 / rate(lambda: subset_ttf_with_fonttools(text), seconds / 2)
    subset_ms = 1000 / rate(lambda: subset_ttf(text), seconds / 2)
    emit(
        bench="documents",
        metric="ofd_font_subset_ms",
        value=round(subset_ms, 2),
        unit="ms",
        baseline="fonttools_subset_ms",
        baseline_value=round(general_ms, 2),
        ratio=round(subset_ms / general_ms, 3),
        glyphs=len(set(text)),
    )
    clean, snapshot = qr_png(signed.signed_qr_text), photo(qr_png(signed.signed_qr_text))
    assert read_upload(snapshot, "photo.jpg", keys=keys).is_authentic
    clean_ms = 1000 / rate(lambda: read_upload(clean, "qr.png", keys=keys), seconds / 2)
    photo_ms = 1000 / rate(lambda: read_upload(snapshot, "photo.jpg", keys=keys), seconds)
    emit(
        bench="documents",
        metric="qr_photo_ms",
        value=round(photo_ms, 2),
        unit="ms",
        baseline="qr_clean_ms",
        baseline_value=round(clean_ms, 2),
        ratio=round(photo_ms / clean_ms, 2),
        target="<= 50 ms per image",
        ok=photo_ms <= 50,
    )


if __name__ == "__main__":
    main()
