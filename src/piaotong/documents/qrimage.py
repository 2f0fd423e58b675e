"""QR code pictures: drawing them (segno, PNG) and finding them in images (zxing-cpp)."""

from __future__ import annotations

import io
from typing import Any

import segno
import zxingcpp


def qr_png(text: str, scale: int = 4) -> bytes:
    """A PNG of `text` as a QR code, error correction M, with the standard quiet zone."""
    out = io.BytesIO()
    segno.make_qr(text, error="m").save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def decode_qr_texts(image: Any) -> list[str]:
    """Every QR text zxing-cpp finds in a Pillow image, in reading order, without duplicates."""
    results = zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode), try_rotate=True
    )
    texts: list[str] = []
    for result in results:
        if result.valid and result.text and result.text not in texts:
            texts.append(result.text)
    return texts
