"""Issuing through the action layer: rows, numbers, ledger, audit, outbox, refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.exchange.actions import message_for
from piaotong.exchange.models import OutboxEvent
from piaotong.invoices.actions import BulkViolations, do_issue_invoices, do_issue_new_invoice
from piaotong.invoices.choices import BuyerKind, InvoiceKind, InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine, QuotaUsage
from piaotong.invoices.payload import invoice_payload
from piaotong.ledger.chain import audit_body, event_body, verify_records
from piaotong.ledger.models import AuditEntry, LedgerEvent, SigningKey
from piaotong.lib import signing
from piaotong.lib.canonical import canonical_json, sha256_hex
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.invoice_numbers import parse_number
from piaotong.testing import draft, line, make_user

pytestmark = pytest.mark.django_db


def fields_of(excinfo: pytest.ExceptionInfo[RuleViolations]) -> set[str]:
    return {v.field for v in excinfo.value.violations}


def nothing_written() -> bool:
    return (
        not Invoice.objects.exists()
        and not LedgerEvent.objects.exists()
        and not OutboxEvent.objects.exists()
    )


def test_it_issues_a_special_invoice_with_several_rates(org_a, org_b, clerk_actor):
    invoice = do_issue_new_invoice(
        clerk_actor,
        org_a,
        draft(
            org_b,
            lines=[
                line(),
                line(
                    tax_code="1090511030000000000",
                    item_name="笔记本电脑",
                    tax_rate="13%",
                    quantity=Decimal("3"),
                    unit_price=Decimal("4999.99"),
                ),
            ],
        ),
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED
    number = parse_number(invoice.number)
    assert (number.region, number.channel, number.sequence) == ("11", "2", 1)
    assert invoice.total_amount == Decimal("1000.00") + Decimal("14999.97")
    assert invoice.total_tax == Decimal("60.00") + Decimal("1950.00")
    assert invoice.total_with_tax == invoice.total_amount + invoice.total_tax
    assert invoice.buyer == org_b
    assert invoice.issuer_name == "clerk"
    names = list(invoice.lines.values_list("printed_name", flat=True))
    assert names[0].endswith("*软件维护费") and names[0].startswith("*")


def test_it_appends_a_verifiable_ledger_event_audit_row_and_outbox_row(org_a, org_b, clerk_actor):
    invoice = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    event = LedgerEvent.objects.get(stream=invoice.stream)
    assert (event.seq, event.prev_hash, event.kind) == (1, "", "InvoiceIssued")
    assert verify_records([event], event_body) is None
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
    assert AuditEntry.objects.filter(action="invoice.issued", target=invoice.stream).count() == 1
    outbox = OutboxEvent.objects.get(ledger_event=event)
    message = message_for(outbox)
    assert message["schema"] == "piaotong.InvoiceIssued"
    assert message["event"]["hash"] == event.hash
    assert outbox.subject == "piaotong.v1.11.31.InvoiceIssued"
    assert outbox.published_at is None


def test_it_signs_the_canonical_payload_with_the_node_key(org_a, org_b, clerk_actor):
    invoice = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    body = canonical_json(invoice_payload(invoice, list(invoice.lines.all())))
    key = SigningKey.objects.get(key_id=invoice.signing_key_id)
    assert sha256_hex(body) == invoice.payload_hash
    assert signing.verify(bytes(key.public_key), body, invoice.signature)
    assert not signing.verify(
        bytes(key.public_key), body.replace(b"1060.00", b"1061.00"), invoice.signature
    )


def test_it_numbers_consecutively_without_gaps(org_a, org_b, clerk_actor):
    numbers = [do_issue_new_invoice(clerk_actor, org_a, draft(org_b)).number for _ in range(3)]
    numbers += [i.number for i in do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 4)]
    assert [parse_number(n).sequence for n in numbers] == list(range(1, 8))


def test_it_gives_the_number_back_when_issuing_fails(org_a, org_b, clerk_actor):
    do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    org_a.issuing_quota = Decimal("1500.00")
    org_a.save()
    with pytest.raises(RuleViolation) as excinfo:
        do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    assert (excinfo.value.field, excinfo.value.code) == ("total_amount", "quota_exceeded")
    org_a.issuing_quota = Decimal("100000.00")
    org_a.save()
    third = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    assert parse_number(third.number).sequence == 2
    assert QuotaUsage.objects.get(organisation=org_a).used == Decimal("2000.00")


def test_it_issues_an_ordinary_invoice_to_a_natural_person(org_a, clerk_actor):
    invoice = do_issue_new_invoice(
        clerk_actor,
        org_a,
        draft(
            kind=InvoiceKind.DIGITAL_ORDINARY,
            buyer_kind=BuyerKind.PERSON,
            buyer_name="王先生",
            buyer_tax_id="",
        ),
    )
    assert invoice.buyer is None and invoice.buyer_tax_id == ""
    assert OutboxEvent.objects.get().subject == "piaotong.v1.11.xx.InvoiceIssued"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"buyer_tax_id": ""}, "buyer_tax_id"),
        ({"buyer_tax_id": "91110108MA01TEXT0X"}, "buyer_tax_id"),
        ({"buyer_name": "<script>alert(1)</script>"}, "buyer_name"),
        ({"remarks": "<b>bold</b>"}, "remarks"),
        ({"buyer_name": "x" * 101}, "buyer_name"),
        ({"kind": "telegram"}, "kind"),
        ({"lines": []}, "lines"),
        ({"lines": [line(tax_rate="0.17")]}, "lines.0.tax_rate"),
        ({"lines": [line(tax_rate="0.13")]}, "lines.0.tax_rate"),
        ({"lines": [line(tax_code="123")]}, "lines.0.tax_code"),
        ({"lines": [line(quantity=Decimal("0"))]}, "lines.0.quantity"),
        ({"lines": [line(quantity=Decimal("-1"))]}, "lines.0.quantity"),
        (
            {"lines": [line(quantity=None, unit_price=None, amount=Decimal("10000000000000000"))]},
            "lines.0.amount",
        ),
        ({"lines": [line(tax=Decimal("60.07"))]}, "lines.0.tax"),
        ({"lines": [line(item_name="")]}, "lines.0.item_name"),
        ({"lines": [line(item_name="<img src=x onerror=alert(1)>")]}, "lines.0.item_name"),
    ],
)
def test_it_refuses_bad_input_and_writes_nothing(org_a, org_b, clerk_actor, overrides, field):
    with pytest.raises(RuleViolations) as excinfo:
        do_issue_new_invoice(clerk_actor, org_a, draft(org_b, **overrides))
    assert field in fields_of(excinfo)
    assert all(v.text() for v in excinfo.value.violations)
    assert nothing_written()


def test_it_keeps_a_supplied_tax_within_tolerance(org_a, org_b, clerk_actor):
    invoice = do_issue_new_invoice(
        clerk_actor, org_a, draft(org_b, lines=[line(tax=Decimal("60.06"))])
    )
    assert invoice.lines.get().tax == Decimal("60.06")


def test_it_refuses_a_general_rate_to_a_small_scale_seller(small_org, org_b):
    actor = actor_for_user(make_user("s", small_org, Role.CLERK))
    with pytest.raises(RuleViolations) as excinfo:
        do_issue_new_invoice(actor, small_org, draft(org_b, lines=[line(tax_rate="0.06")]))
    assert "lines.0.tax_rate" in fields_of(excinfo)
    invoice = do_issue_new_invoice(actor, small_org, draft(org_b, lines=[line(tax_rate="0.01")]))
    assert invoice.total_tax == Decimal("10.00")


def test_it_refuses_issuing_to_an_auditor(org_a, org_b, auditor):
    with pytest.raises(PermissionDenied):
        do_issue_new_invoice(actor_for_user(auditor), org_a, draft(org_b))
    assert nothing_written()


def test_it_refuses_issuing_for_another_organisation(org_a, org_b, outsider):
    with pytest.raises(PermissionDenied):
        do_issue_new_invoice(actor_for_user(outsider), org_a, draft(org_b))


def test_it_issues_bulk_all_or_nothing_with_per_item_errors(org_a, org_b, clerk_actor):
    drafts = [draft(org_b), draft(org_b, buyer_tax_id="bad"), draft(org_b), draft(org_b, lines=[])]
    with pytest.raises(BulkViolations) as excinfo:
        do_issue_invoices(clerk_actor, org_a, drafts)
    assert sorted(excinfo.value.items) == [1, 3]
    assert nothing_written()
    issued = do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 25)
    assert Invoice.objects.filter(status=InvoiceStatus.ISSUED).count() == 25
    assert InvoiceLine.objects.count() == 25
    assert LedgerEvent.objects.count() == OutboxEvent.objects.count() == 25
    assert len({i.number for i in issued}) == 25
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None


def test_it_detects_an_altered_ledger_event(org_a, org_b, clerk_actor):
    invoice = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    LedgerEvent.objects.filter(stream=invoice.stream).update(
        payload={**LedgerEvent.objects.get(stream=invoice.stream).payload, "signature": "forged"}
    )
    broken = verify_records(LedgerEvent.objects.filter(stream=invoice.stream), event_body)
    assert broken is not None and broken.reason == "content does not match its hash"
