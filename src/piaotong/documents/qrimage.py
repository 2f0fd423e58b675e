"""QR code pictures: drawing them and finding them in images, both with zxing-cpp.

Drawing used segno until its pure-Python mask selection (the eight masks of ISO/IEC 18004 each
applied and scored) made the two QR codes of an invoice cost more than the rest of its PDF
(27 of 48 ms, docs/benchmarks.md); zxing-cpp, which the reading side uses already, encodes the
same way in C++ and picks the segment modes that give the smallest symbol.
"""

from __future__ import annotations

import io
from typing import Any

import zxingcpp
from PIL import Image, ImageOps

QUIET_ZONE = 4  # modules of light margin on each side, as the standard asks


def qr_png(text: str, scale: int = 4) -> bytes:
    """A PNG of `text` as a QR code, error correction M, with the standard quiet zone; black
    and white (1 bit per pixel), `scale` pixels per module. Same text, same bytes."""
    symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    bitmap: Any = zxingcpp.write_barcode_to_image(symbol, scale=1, add_quiet_zones=False)
    modules = memoryview(bitmap)  # 8-bit grey, one byte per module: 0 dark, 255 light
    height, width = bitmap.shape
    image = Image.frombytes("L", (width, height), modules.tobytes())
    image = ImageOps.expand(image, border=QUIET_ZONE, fill=255)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.convert("1").save(out, "PNG")
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
