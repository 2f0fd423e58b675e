"""Content-addressed storage of documents under MEDIA_ROOT/documents/<aa>/<sha256>.<format>.

Writing the same bytes twice stores one file; a file is written to a temporary name and
renamed, so a reader never sees half a document. Files are never served directly: downloads go
through views that check the actor's access.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings

from piaotong.documents.models import Document


def root() -> Path:
    return Path(settings.MEDIA_ROOT) / "documents"


def path_for(sha256: str, fmt: str) -> Path:
    return root() / sha256[:2] / f"{sha256}.{fmt}"


def write_bytes(data: bytes, fmt: str) -> tuple[str, int]:
    """Store `data`; return (sha256, size)."""
    digest = hashlib.sha256(data).hexdigest()
    path = path_for(digest, fmt)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest, len(data)


def read_bytes(document: Document) -> bytes:
    """The stored bytes of `document`, checked against its recorded hash."""
    data = path_for(document.sha256, document.format).read_bytes()
    if hashlib.sha256(data).hexdigest() != document.sha256:
        raise OSError(f"stored document {document.sha256} does not match its hash")
    return data


def exists(document: Document) -> bool:
    return path_for(document.sha256, document.format).exists()
