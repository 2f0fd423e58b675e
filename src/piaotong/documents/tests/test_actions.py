"""Storing documents: content-addressed files, Document rows, DocumentRendered ledger events,
rendering after commit, and failures that are recorded and retried without losing the invoice."""

from __future__ import annotations

import hashlib

import pytest
from django.db import transaction

from piaotong.documents import actions, storage
from piaotong.documents.actions import (
    RENDERED_EVENT,
    get_document,
    missing_invoice_ids,
    render_documents,
    schedule_rendering,
)
from piaotong.documents.models import Document, RenderFailure
from piaotong.invoices.actions import do_issue_invoice, do_issue_new_invoice
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.errors import RuleViolation
from piaotong.testing import draft

pytestmark = pytest.mark.django_db


def test_it_stores_a_document_by_its_hash_and_records_it_in_the_ledger(issued):
    document = get_document(issued, "pdf")
    data = storage.read_bytes(document)
    assert data.startswith(b"%PDF-")
    assert document.sha256 == hashlib.sha256(data).hexdigest() and document.size == len(data)
    assert storage.path_for(document.sha256, "pdf").name == f"{document.sha256}.pdf"
    event = LedgerEvent.objects.get(stream=f"documents:{issued.uid}", kind=RENDERED_EVENT)
    assert not LedgerEvent.objects.filter(stream=issued.stream, kind=RENDERED_EVENT).exists()
    assert event.payload == {
        "number": issued.number,
        "format": "pdf",
        "sha256": document.sha256,
        "size": document.size,
    }


def test_it_renders_once_and_returns_the_stored_document_after(issued):
    first = get_document(issued, "xml")
    assert get_document(issued, "xml") == first
    assert LedgerEvent.objects.filter(kind=RENDERED_EVENT).count() == 1


def test_it_renders_again_when_the_file_was_lost(issued):
    document = get_document(issued, "xml")
    storage.path_for(document.sha256, "xml").unlink()
    again = get_document(issued, "xml")
    assert again.sha256 == document.sha256 and storage.exists(again)


def test_it_refuses_unknown_formats_and_drafts(issued, org_a, org_b, clerk_actor):
    with pytest.raises(RuleViolation) as raised:
        get_document(issued, "docx")
    assert raised.value.code == "unknown_format"
    pending = Invoice(seller=org_a, kind="digital_special", status=InvoiceStatus.DRAFT)
    with pytest.raises(RuleViolation) as raised:
        actions.signed_invoice(pending)
    assert raised.value.code == "not_issued"


def test_it_refuses_to_render_an_invoice_altered_after_issue(issued):
    Invoice.objects.filter(pk=issued.pk).update(buyer_name="改过的买方")
    issued.refresh_from_db()
    with pytest.raises(RuleViolation) as raised:
        get_document(issued, "pdf")
    assert raised.value.code == "payload_changed"
    assert not Document.objects.exists()


def test_a_failure_is_recorded_and_a_retry_succeeds(issued, settings, monkeypatch):
    def broken(_signed):
        raise OSError("disk full")

    monkeypatch.setitem(actions.RENDERERS, "ofd", broken)
    failed = render_documents([issued.pk])
    assert [(f.format, f.attempts) for f in failed] == [("ofd", 1)]
    assert "disk full" in RenderFailure.objects.get().error
    assert set(issued.documents.values_list("format", flat=True)) == {"pdf", "xml"}
    assert Invoice.objects.get(pk=issued.pk).status == InvoiceStatus.ISSUED
    render_documents([issued.pk])
    assert RenderFailure.objects.get().attempts == 2
    assert missing_invoice_ids() == [issued.pk]
    monkeypatch.undo()
    assert render_documents(missing_invoice_ids()) == []
    assert not RenderFailure.objects.exists() and missing_invoice_ids() == []


@pytest.mark.django_db(transaction=True)
def test_schedule_rendering_renders_after_commit_only(
    org_a, org_b, clerk_actor, media_root, settings
):
    settings.PIAOTONG_DOCUMENTS_RENDER = "inline"
    with transaction.atomic():
        invoice = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
        schedule_rendering([invoice])
        assert not Document.objects.exists()
    assert set(invoice.documents.values_list("format", flat=True)) == {"pdf", "xml", "ofd"}


@pytest.mark.django_db(transaction=True)
def test_nothing_is_rendered_when_issuing_rolls_back(
    org_a, org_b, clerk_actor, media_root, settings
):
    settings.PIAOTONG_DOCUMENTS_RENDER = "inline"

    def issue_then_fail() -> None:
        with transaction.atomic():
            schedule_rendering([do_issue_new_invoice(clerk_actor, org_a, draft(org_b))])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        issue_then_fail()
    assert not Document.objects.exists() and not Invoice.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_issuing_a_draft_renders_its_documents_through_the_signal(
    org_a, org_b, clerk_actor, media_root, settings
):
    from piaotong.invoices.actions import do_create_draft

    settings.PIAOTONG_DOCUMENTS_RENDER = "inline"
    invoice = do_create_draft(clerk_actor, org_a, draft(org_b))
    assert not Document.objects.exists()
    do_issue_invoice(clerk_actor, invoice)
    assert set(invoice.documents.values_list("format", flat=True)) == {"pdf", "xml", "ofd"}
    kinds = list(
        LedgerEvent.objects.filter(stream__in=[invoice.stream, f"documents:{invoice.uid}"])
        .order_by("seq")
        .values_list("kind", flat=True)
    )
    assert "InvoiceIssued" in kinds and kinds.count(RENDERED_EVENT) == 3


@pytest.mark.django_db(transaction=True)
def test_the_background_renderer_renders_after_commit(
    org_a, org_b, clerk_actor, media_root, settings
):
    import time

    settings.PIAOTONG_DOCUMENTS_RENDER = "background"
    with transaction.atomic():
        invoice = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
        schedule_rendering([invoice])
    # Wait on the renderer's queue, not by polling the table: the test database is SQLite's
    # in-memory shared cache, where a read at the wrong moment fails the renderer's write at
    # once with "database table is locked".
    deadline = time.monotonic() + 30
    while actions._queue.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.05)
    assert actions._queue.unfinished_tasks == 0
    assert Document.objects.filter(invoice=invoice).count() == 3
