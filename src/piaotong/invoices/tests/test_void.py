"""Voiding (作废): paper kinds only, within the month of issue, before the buyer used it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.exchange.models import OutboxEvent
from piaotong.invoices.choices import InvoiceStatus, RedLetterReason
from piaotong.invoices.redletter import (
    RedLetterInput,
    check_voidable,
    do_request_red_letter,
    do_void_invoice,
)
from piaotong.invoices.redletter_rules import RedLineRequest
from piaotong.invoices.tests.conftest import paper
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger
from piaotong.lib.errors import RuleViolation

pytestmark = pytest.mark.django_db


def test_it_voids_a_paper_invoice_of_this_month(org_a, seller):
    invoice = paper(org_a, seller)
    invoice = do_void_invoice(seller, invoice, "开票信息填错")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOIDED and invoice.voided_at is not None
    assert invoice.status_mark == ("作废", "Voided")
    event = LedgerEvent.objects.get(stream=invoice.stream, kind="InvoiceVoided")
    assert event.seq == 2 and event.payload["reason"] == "开票信息填错"
    assert OutboxEvent.objects.get(ledger_event=event).subject.endswith(".InvoiceVoided")
    audit = AuditEntry.objects.get(action="invoice.voided")
    assert audit.organisation_id == org_a.pk and audit.details["number"] == invoice.number
    assert list(verify_ledger()) == []
    with pytest.raises(RuleViolation) as raised:
        do_void_invoice(seller, invoice, "again")
    assert raised.value.code == "not_voidable"


def test_it_never_voids_a_digital_invoice(blue, seller):
    with pytest.raises(RuleViolation) as raised:
        do_void_invoice(seller, blue, "mistake")
    assert raised.value.code == "digital_not_voidable"
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.ISSUED
    assert not LedgerEvent.objects.filter(kind="InvoiceVoided").exists()


def test_it_voids_only_within_the_month_of_issue(org_a, seller):
    invoice = paper(org_a, seller)
    today = timezone.localdate()
    check_voidable(invoice, today)
    next_month = (today.replace(day=28) + timedelta(days=5)).replace(day=1)
    with pytest.raises(RuleViolation) as raised:
        check_voidable(invoice, next_month)
    assert raised.value.code == "month_passed"


def test_it_asks_for_a_reason_and_the_void_right(org_a, seller, clerk, auditor):
    invoice = paper(org_a, seller)
    with pytest.raises(RuleViolation) as raised:
        do_void_invoice(seller, invoice, " ")
    assert raised.value.code == "required"
    for user in (clerk, auditor):
        with pytest.raises(PermissionDenied):
            do_void_invoice(actor_for_user(user), invoice, "mistake")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED


def test_it_does_not_void_an_invoice_with_a_red_letter_request(org_a, org_c, seller):
    invoice = paper(org_a, seller, org_c)
    request = RedLetterInput(
        RedLetterReason.SALES_RETURN, full=False, lines=[RedLineRequest(1, Decimal("10.00"))]
    )
    do_request_red_letter(seller, invoice, "seller", request)
    with pytest.raises(RuleViolation) as raised:
        do_void_invoice(seller, invoice, "mistake")
    assert raised.value.code == "red_letter_open"


def test_it_does_not_void_a_red_flushed_or_red_invoice(org_a, seller):
    invoice = paper(org_a, seller)
    confirmation = do_request_red_letter(
        seller, invoice, "seller", RedLetterInput(RedLetterReason.INVOICING_ERROR)
    )
    for target in (invoice, confirmation.red_invoice):
        with pytest.raises(RuleViolation) as raised:
            do_void_invoice(seller, target, "mistake")
        assert raised.value.code in {"not_voidable", "red_letter_open"}
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.FULLY_RED_FLUSHED


def test_it_voids_an_unused_invoice_to_an_organisation(org_a, org_c, seller):
    invoice = do_void_invoice(seller, paper(org_a, seller, org_c), "mistake")
    assert invoice.status == InvoiceStatus.VOIDED


def test_it_does_not_void_an_invoice_the_buyer_booked(org_a, org_c, seller, buyer):
    from piaotong.deduction.actions import do_book_invoice

    invoice = paper(org_a, seller, org_c)
    do_book_invoice(buyer, invoice)
    with pytest.raises(RuleViolation) as raised:
        do_void_invoice(seller, invoice, "mistake")
    assert (raised.value.code, raised.value.params["usage"]) == ("buyer_used", "booked")
