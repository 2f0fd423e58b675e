"""Document types recognised by their first bytes (magic numbers), never by name or header.

Qualification documents (资质证明) are accepted as PDF, PNG or JPEG only; a file whose bytes are
none of these is refused whatever it is called.

>>> detect_document_type(b"%PDF-1.7\\n...")
'application/pdf'
>>> detect_document_type(b"\\x89PNG\\r\\n\\x1a\\n....")
'image/png'
>>> detect_document_type(b"\\xff\\xd8\\xff\\xe0....")
'image/jpeg'
>>> detect_document_type(b"MZ\\x90\\x00") is None
True
"""

from __future__ import annotations

SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
EXTENSIONS = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}


def detect_document_type(content: bytes) -> str | None:
    """The MIME type of a PDF, PNG or JPEG file from its first bytes; None for anything else."""
    for magic, content_type in SIGNATURES:
        if content.startswith(magic):
            return content_type
    return None
