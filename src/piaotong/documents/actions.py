"""Rendering, storing and recording invoice documents (PDF, XML, OFD).

Documents are rendered after the issuing transaction commits, never inside it: a rendering
failure must never lose or delay an invoice. Each stored document is one `Document` row plus a
`DocumentRendered` event on the stream `documents:<uid>` (see `documents_stream`), written together while holding the
invoice row lock, so the ledger records the hash of every file a party received. A failure is
recorded as a `RenderFailure` and retried on demand (`get_document`) or by
`piaotong documents render`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, F
from django.utils.translation import gettext_lazy as _

from piaotong.documents import storage
from piaotong.documents.choices import DocumentFormat
from piaotong.documents.content import SignedInvoice, build_signed_invoice
from piaotong.documents.invoice_xml import render_xml
from piaotong.documents.models import Document, RenderFailure
from piaotong.documents.ofd import render_ofd
from piaotong.documents.pdf import render_pdf
from piaotong.invoices.models import Invoice
from piaotong.invoices.payload import invoice_payload
from piaotong.ledger.actions import append_event
from piaotong.ledger.keys import signing_key
from piaotong.lib.canonical import canonical_json, sha256_hex
from piaotong.lib.errors import RuleViolation

logger = logging.getLogger(__name__)

RENDERED_EVENT = "DocumentRendered"
FORMATS = tuple(DocumentFormat)
RENDERERS: dict[str, Callable[[SignedInvoice], bytes]] = {
    DocumentFormat.XML: render_xml,
    DocumentFormat.PDF: render_pdf,
    DocumentFormat.OFD: render_ofd,
}


def signed_invoice(invoice: Invoice) -> SignedInvoice:
    """The document facts of an issued invoice, refused if its rows no longer match its hash."""
    if not invoice.number or not invoice.payload_hash:
        raise RuleViolation(
            "invoice",
            "not_issued",
            _("Invoice %(ref)s is not issued yet; documents exist only for issued invoices."),
            {"ref": str(invoice)},
        )
    payload = invoice_payload(invoice, list(invoice.lines.order_by("position")))
    if sha256_hex(canonical_json(payload)) != invoice.payload_hash:
        raise RuleViolation(
            "invoice",
            "payload_changed",
            _(
                "Invoice %(ref)s no longer matches the payload signed at issue; its documents "
                "are not rendered. Run `piaotong ledger verify` to find the altered row."
            ),
            {"ref": invoice.number},
        )
    blue = invoice.red_of.number or "" if invoice.red_of_id and invoice.red_of else ""
    return build_signed_invoice(
        payload, invoice.signature, invoice.signing_key_id, blue, signing_key()
    )


def render_bytes(invoice: Invoice, fmt: str) -> bytes:
    return RENDERERS[_format(fmt)](signed_invoice(invoice))


def do_render_document(invoice: Invoice, fmt: str) -> Document:
    """Render one format, store it and record it; an existing document is returned as is.

    The bytes are rendered and written before the transaction (content-addressed, so a file
    left by a rollback is harmless and reused by the next attempt); the row, the ledger event
    and the removal of a failure record commit together under the invoice's row lock.
    """
    fmt = _format(fmt)
    data = render_bytes(invoice, fmt)
    digest, size = storage.write_bytes(data, fmt)
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice.pk)
        existing = Document.objects.filter(invoice=locked, format=fmt).first()
        if existing is not None:
            return existing
        document = Document.objects.create(invoice=locked, format=fmt, sha256=digest, size=size)
        append_event(
            documents_stream(locked),
            RENDERED_EVENT,
            {"number": locked.number, "format": fmt, "sha256": digest, "size": size},
        )
        RenderFailure.objects.filter(invoice=locked, format=fmt).delete()
    return document


def documents_stream(invoice: Invoice) -> str:
    """The ledger stream of an invoice's documents, `documents:<uid>`.

    Not the invoice's own stream: rendering is this node's local fact and is never published,
    while peers order each invoice stream by (writer, seq) and would wait forever for a seq they
    never receive. The invoice row lock still serialises appends to this stream.
    """
    return f"documents:{invoice.uid}"


def get_document(invoice: Invoice, fmt: str) -> Document:
    """The stored document of `invoice` in `fmt` ("pdf", "xml" or "ofd"), rendered if missing."""
    fmt = _format(fmt)
    document = Document.objects.filter(invoice=invoice, format=fmt).first()
    if document is not None and storage.exists(document):
        return document
    if document is not None:
        _forget_lost_file(document)
    try:
        return do_render_document(invoice, fmt)
    except RuleViolation:
        raise
    except Exception as error:
        record_failure(invoice, fmt, error)
        raise


def _forget_lost_file(document: Document) -> None:
    """A row whose file is gone (a restore without media): render again. The content is the
    same; the bytes are the same only if the renderer has not changed since (the ledger then
    holds both renders' hashes, each with its own `DocumentRendered` event)."""
    logger.warning("document file missing, rendering again: %s", document.sha256)
    with transaction.atomic():
        Document.objects.filter(pk=document.pk).delete()


def record_failure(invoice: Invoice, fmt: str, error: BaseException) -> None:
    logger.error("rendering %s of invoice %s failed: %r", fmt, invoice.number, error)
    text = f"{type(error).__name__}: {error}"[:2000]
    with transaction.atomic():
        updated = RenderFailure.objects.filter(invoice=invoice, format=fmt).update(
            error=text, attempts=F("attempts") + 1
        )
        if not updated:
            RenderFailure.objects.create(invoice=invoice, format=fmt, error=text)


def render_documents(invoice_ids: Iterable[int]) -> list[RenderFailure]:
    """Render every missing format of these invoices; failures are recorded, never raised."""
    failed: list[RenderFailure] = []
    invoices = Invoice.objects.filter(pk__in=list(invoice_ids), number__isnull=False)
    for invoice in invoices.select_related("red_of"):
        present = set(Document.objects.filter(invoice=invoice).values_list("format", flat=True))
        for fmt in FORMATS:
            if fmt in present:
                continue
            try:
                do_render_document(invoice, fmt)
            except Exception as error:
                record_failure(invoice, fmt, error)
                failed.append(RenderFailure.objects.get(invoice=invoice, format=fmt))
    return failed


def missing_invoice_ids(limit: int = 1000) -> list[int]:
    """Issued invoices lacking at least one format (failed ones included), oldest first."""
    issued = (
        Invoice.objects.filter(number__isnull=False)
        .annotate(rendered=Count("documents"))
        .filter(rendered__lt=len(FORMATS))
        .order_by("pk")
    )
    return list(issued.values_list("pk", flat=True)[:limit])


def _format(fmt: str) -> str:
    if fmt not in RENDERERS:
        raise RuleViolation(
            "format",
            "unknown_format",
            _("%(format)s is not a document format; use pdf, xml or ofd."),
            {"format": fmt},
        )
    return fmt


# --- after commit ----------------------------------------------------------------------------


def schedule_rendering(invoices: Iterable[Invoice]) -> None:
    """Render the documents of these just-issued invoices once the transaction commits.

    Call it inside the issuing transaction. `PIAOTONG_DOCUMENTS_RENDER` chooses how:
    "background" (the default: one renderer thread per process, so issuing stays fast),
    "inline" (in the committing thread) or "off" (left to `piaotong documents render` and to
    rendering on first download). Under tests (PIAOTONG_TESTING=1) the default is "off".
    """
    ids = [invoice.pk for invoice in invoices if invoice.pk is not None]
    if ids:
        transaction.on_commit(lambda: _dispatch(ids))


def render_mode() -> str:
    default = "off" if os.environ.get("PIAOTONG_TESTING") else "background"
    return str(getattr(settings, "PIAOTONG_DOCUMENTS_RENDER", default))


def _dispatch(ids: list[int]) -> None:
    mode = render_mode()
    if mode == "inline":
        render_documents(ids)
    elif mode == "background":
        _start_renderer()
        for pk in ids:
            _queue.put(pk)


_queue: queue.Queue[int] = queue.Queue()
_renderer: threading.Thread | None = None
_renderer_lock = threading.Lock()


def _start_renderer() -> None:
    global _renderer
    with _renderer_lock:
        if _renderer is None or not _renderer.is_alive():
            _renderer = threading.Thread(target=_render_forever, name="documents", daemon=True)
            _renderer.start()


def _render_forever() -> None:
    # A process that dies with ids still queued leaves them to `piaotong documents render`.
    while True:
        pk = _queue.get()
        try:
            render_documents([pk])
        except Exception:
            logger.exception("rendering documents of invoice %s failed", pk)
        finally:
            if _queue.empty():
                connections.close_all()  # this thread's own connections only
            _queue.task_done()  # `_queue.unfinished_tasks` is 0 once everything queued is done
