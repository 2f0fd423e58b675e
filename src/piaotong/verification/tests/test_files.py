"""Verification by QR text, QR picture and invoice file (PDF, XML, OFD): the signature is checked,
the content compared with the record, and a tampered file has its altered fields named."""

from __future__ import annotations

from typing import Any

import pytest

from piaotong.documents.actions import render_bytes, signed_invoice
from piaotong.documents.qrimage import qr_png
from piaotong.invoices.models import Invoice
from piaotong.lib.errors import RuleViolation
from piaotong.lib.qr import compose_digital_qr, compose_legacy_qr
from piaotong.verification.actions import Requester, do_verify_file, do_verify_qr_text
from piaotong.verification.choices import InputKind, Outcome
from piaotong.verification.models import VerificationLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def qr_text(invoice: Invoice) -> str:
    assert invoice.number and invoice.issue_date
    return compose_digital_qr("31", invoice.number, invoice.issue_date, invoice.total_with_tax)


def test_it_matches_by_qr_text(anonymous: Requester, qr_text: str) -> None:
    result = do_verify_qr_text(anonymous, qr_text.rstrip(","))
    assert result.outcome == Outcome.MATCH
    assert result.input_kind == InputKind.QR_TEXT


def test_it_names_the_amount_of_a_qr_text_that_differs(
    anonymous: Requester, invoice: Invoice
) -> None:
    assert invoice.number and invoice.issue_date
    text = compose_digital_qr("31", invoice.number, invoice.issue_date, invoice.total_amount)
    result = do_verify_qr_text(anonymous, text)
    assert result.differing == ("total_with_tax",)
    assert [h.code for h in result.hints] == ["pre_tax_amount_typed"]


def test_it_verifies_a_legacy_qr_text_as_not_held(anonymous: Requester, invoice: Invoice) -> None:
    assert invoice.issue_date
    text = compose_legacy_qr(
        "10",
        "011002100111",
        "00000001",
        invoice.issue_date,
        invoice.total_amount,
        "12345678901234567890",
    )
    result = do_verify_qr_text(anonymous, text)
    assert result.outcome == Outcome.NOT_FOUND
    assert result.identifier == "011002100111:00000001"


def test_it_refuses_a_malformed_qr_text_and_logs_it(anonymous: Requester) -> None:
    with pytest.raises(RuleViolation):
        do_verify_qr_text(anonymous, "01,32,,123,abc,2026")
    assert VerificationLog.objects.get().outcome == Outcome.INVALID


def test_it_matches_a_picture_of_the_official_qr_code(anonymous: Requester, qr_text: str) -> None:
    result = do_verify_file(anonymous, qr_png(qr_text), "photo.png")
    assert result.outcome == Outcome.MATCH
    assert result.input_kind == InputKind.QR_IMAGE


@pytest.mark.parametrize("fmt", ["xml", "pdf", "ofd"])
def test_it_matches_each_invoice_file_with_a_valid_signature(
    anonymous: Requester, invoice: Invoice, media_root: Any, fmt: str
) -> None:
    result = do_verify_file(anonymous, render_bytes(invoice, fmt), f"invoice.{fmt}")
    assert result.outcome == Outcome.MATCH, result.differing
    assert result.signature == "valid"
    assert result.invoice is not None and result.invoice.number == invoice.number


def test_it_names_the_field_altered_in_an_xml(
    anonymous: Requester, invoice: Invoice, media_root: Any
) -> None:
    xml = render_bytes(invoice, "xml").decode()
    forged = xml.replace("<TotalTax-includedAmount>1060.00<", "<TotalTax-includedAmount>9060.00<")
    assert forged != xml
    result = do_verify_file(anonymous, forged.encode(), "invoice.xml")
    assert result.outcome == Outcome.MISMATCH
    assert "total_with_tax" in result.differing
    assert result.stored == {}  # an anonymous visitor is not told the true total


def test_it_detects_a_forged_signed_payload(
    anonymous: Requester, invoice: Invoice, media_root: Any
) -> None:
    signed = signed_invoice(invoice)
    forged = signed.signed_qr_text.replace(",1060.00,", ",9060.00,")
    assert forged != signed.signed_qr_text
    result = do_verify_file(anonymous, qr_png(forged), "qr.png")
    assert result.outcome == Outcome.MISMATCH
    assert result.signature == "invalid"
    assert "signature" in result.differing and "total_with_tax" in result.differing


def test_it_refuses_a_file_that_is_no_invoice(anonymous: Requester) -> None:
    with pytest.raises(RuleViolation) as caught:
        do_verify_file(anonymous, b"hello, world", "notes.txt")
    assert caught.value.code == "unknown_file_type"
    assert VerificationLog.objects.get().outcome == Outcome.INVALID
