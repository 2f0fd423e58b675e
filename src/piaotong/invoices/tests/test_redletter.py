"""Red-letter (红字) through the confirmation workflow, at the action level: rows, the blue
invoice's status, the ledger, the audit chain and the outbox."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.exchange.models import OutboxEvent
from piaotong.invoices import redletter
from piaotong.invoices.choices import InvoiceStatus, RedLetterReason, RedLetterStatus
from piaotong.invoices.models import Invoice, RedLetterConfirmation
from piaotong.invoices.payload import invoice_payload
from piaotong.invoices.redletter import (
    RedLetterInput,
    apply_remote_event,
    do_confirm_red_letter,
    do_refuse_red_letter,
    do_request_red_letter,
    do_withdraw_red_letter,
    expire_red_letter_requests,
)
from piaotong.invoices.redletter_rules import RedLineRequest
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger
from piaotong.lib.canonical import canonical_json, sha256_hex
from piaotong.lib.errors import RuleViolation

pytestmark = pytest.mark.django_db

RETURN = RedLetterReason.SALES_RETURN
ERROR = RedLetterReason.INVOICING_ERROR


def partial(*pairs: tuple[int, str]) -> RedLetterInput:
    lines = [RedLineRequest(position, Decimal(amount)) for position, amount in pairs]
    return RedLetterInput(reason=RETURN, full=False, lines=lines)


def kinds(invoice: Invoice) -> list[str]:
    return list(
        LedgerEvent.objects.filter(stream=invoice.stream)
        .order_by("seq")
        .values_list("kind", flat=True)
    )


def assert_chains_valid() -> None:
    assert list(verify_ledger()) == []


def test_it_files_a_buyer_request_that_waits_for_the_seller(blue, buyer, org_c):
    confirmation = do_request_red_letter(buyer, blue, "buyer", RedLetterInput(reason=ERROR))
    assert confirmation.status == RedLetterStatus.PENDING
    assert confirmation.platform_code == "03"
    assert confirmation.initiator == org_c and confirmation.confirmation_required
    assert confirmation.total_amount == Decimal("-15999.97")
    assert confirmation.total_tax == Decimal("-2010.00")
    assert confirmation.expires_at - confirmation.created_at == timedelta(hours=72)
    assert kinds(blue) == ["InvoiceIssued", "RedLetterRequested"]
    event = LedgerEvent.objects.get(stream=blue.stream, kind="RedLetterRequested")
    assert event.payload["blue_number"] == blue.number
    assert event.payload["confirmation"] == str(confirmation.uid)
    outbox = OutboxEvent.objects.get(ledger_event=event)
    assert outbox.subject == "piaotong.v1.11.11.RedLetterRequested"
    audit = AuditEntry.objects.get(action="red_letter.requested")
    assert audit.organisation_id == org_c.pk and audit.target == blue.stream
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.ISSUED
    assert_chains_valid()


def test_it_issues_the_red_invoice_when_the_seller_confirms(blue, buyer, seller, finance_a):
    confirmation = do_request_red_letter(buyer, blue, "buyer", RedLetterInput(reason=ERROR))
    confirmation = do_confirm_red_letter(seller, confirmation)
    assert confirmation.status == RedLetterStatus.ISSUED and confirmation.platform_code == "04"
    red = confirmation.red_invoice
    assert red is not None and red.red_of == blue and red.status == InvoiceStatus.ISSUED
    assert red.number and red.number != blue.number and red.number == confirmation.red_number
    assert (red.total_amount, red.total_tax) == (Decimal("-15999.97"), Decimal("-2010.00"))
    assert red.issuer_name == "finance.a"
    assert [line.amount for line in red.lines.order_by("position")] == [
        Decimal("-1000.00"),
        Decimal("-14999.97"),
    ]
    assert red.lines.get(position=2).quantity == Decimal("-3")
    # The signed payload names the blue invoice; the remarks name the confirmation.
    payload = invoice_payload(red, list(red.lines.all()))
    assert payload["red_of"] == {"number": blue.number}
    assert sha256_hex(canonical_json(payload)) == red.payload_hash
    assert confirmation.uid.hex in red.remarks and blue.number in red.remarks
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.FULLY_RED_FLUSHED
    assert kinds(blue) == [
        "InvoiceIssued",
        "RedLetterRequested",
        "RedLetterConfirmed",
        "InvoiceRedFlushed",
    ]
    assert kinds(red) == ["InvoiceIssued"]
    flushed = LedgerEvent.objects.get(stream=blue.stream, kind="InvoiceRedFlushed")
    assert flushed.payload["red_number"] == red.number
    assert flushed.payload["status"] == "fully_red_flushed"
    assert OutboxEvent.objects.get(ledger_event=flushed).subject.endswith(".InvoiceRedFlushed")
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"red_letter.confirmed", "invoice.red_flushed", "invoice.issued"} <= actions
    assert_chains_valid()


def test_it_reverses_in_parts_until_the_blue_invoice_is_fully_red_flushed(blue, seller, buyer):
    first = do_request_red_letter(seller, blue, "seller", partial((1, "400.00")))
    assert first.status == RedLetterStatus.PENDING and first.platform_code == "02"
    assert first.total_tax == Decimal("-24.00")
    do_confirm_red_letter(buyer, first)
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.PARTIALLY_RED_FLUSHED
    second = do_request_red_letter(seller, blue, "seller", partial((1, "600.00"), (2, "14999.97")))
    do_confirm_red_letter(buyer, second)
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.FULLY_RED_FLUSHED
    second.refresh_from_db()
    # The last part takes exactly the tax that remains: the reds sum to the blue, to the fen.
    reds = Invoice.objects.filter(red_of=blue)
    assert sum(r.total_amount for r in reds) == -blue.total_amount
    assert sum(r.total_tax for r in reds) == -blue.total_tax
    assert_chains_valid()


def test_it_refuses_to_reverse_more_than_remains(blue, seller, buyer):
    do_confirm_red_letter(
        buyer, do_request_red_letter(seller, blue, "seller", partial((1, "700.00")))
    )
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, blue, "seller", partial((1, "300.01")))
    assert (raised.value.field, raised.value.code) == ("lines.0.amount", "over_flush")
    # A pending request holds its amount too: two requests cannot share the same remainder.
    do_request_red_letter(seller, blue, "seller", partial((1, "300.00")))
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, blue, "seller", partial((1, "0.01")))
    assert raised.value.code == "over_flush"
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, blue, "seller", RedLetterInput(ERROR))
    assert raised.value.code == "already_partly_reversed"
    assert RedLetterConfirmation.objects.count() == 2


def test_it_allows_partial_reversal_only_for_returns_and_allowances(blue, seller):
    wrong = RedLetterInput(reason=ERROR, full=False, lines=[RedLineRequest(1, Decimal("1.00"))])
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, blue, "seller", wrong)
    assert raised.value.code == "partial_not_allowed"
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, blue, "seller", RedLetterInput(reason="09"))
    assert raised.value.code == "invalid_reason"
    assert not RedLetterConfirmation.objects.exists()
    assert kinds(blue) == ["InvoiceIssued"]


def test_it_frees_the_amount_of_a_refused_request(blue, seller, buyer):
    confirmation = do_request_red_letter(seller, blue, "seller", partial((1, "1000.00")))
    with pytest.raises(RuleViolation) as raised:
        do_refuse_red_letter(buyer, confirmation, "  ")
    assert raised.value.code == "required"
    confirmation = do_refuse_red_letter(buyer, confirmation, "货物未退回")
    assert confirmation.status == RedLetterStatus.REFUSED and confirmation.platform_code == "05"
    assert (
        confirmation.refusal_reason == "货物未退回"
        and confirmation.answered_by_label == "finance.c"
    )
    assert kinds(blue)[-1] == "RedLetterRefused"
    with pytest.raises(RuleViolation):
        do_confirm_red_letter(buyer, confirmation)
    again = do_request_red_letter(seller, blue, "seller", partial((1, "1000.00")))
    assert again.status == RedLetterStatus.PENDING
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.ISSUED


def test_it_lets_only_the_initiator_withdraw_and_only_the_counterparty_answer(blue, seller, buyer):
    confirmation = do_request_red_letter(seller, blue, "seller", partial((2, "100.00")))
    with pytest.raises(PermissionDenied):
        do_withdraw_red_letter(buyer, confirmation)
    with pytest.raises(PermissionDenied):
        do_confirm_red_letter(seller, confirmation)
    confirmation = do_withdraw_red_letter(seller, confirmation)
    assert confirmation.status == RedLetterStatus.WITHDRAWN and confirmation.platform_code == "08"
    assert kinds(blue)[-1] == "RedLetterWithdrawn"
    assert AuditEntry.objects.filter(action="red_letter.withdrawn").count() == 1
    with pytest.raises(RuleViolation):
        do_confirm_red_letter(buyer, confirmation)
    with pytest.raises(RuleViolation):
        do_withdraw_red_letter(seller, confirmation)
    assert_chains_valid()


def test_it_denies_roles_without_the_red_letter_right(blue, clerk, clerk_c, auditor, outsider):
    request = RedLetterInput(reason=ERROR)
    for user, side in [
        (clerk, "seller"),
        (auditor, "seller"),
        (clerk_c, "buyer"),
        (outsider, "buyer"),
    ]:
        with pytest.raises(PermissionDenied):
            do_request_red_letter(actor_for_user(user), blue, side, request)
    assert not RedLetterConfirmation.objects.exists()


def test_it_expires_unanswered_requests_after_72_hours_once(blue, seller, buyer):
    confirmation = do_request_red_letter(seller, blue, "seller", partial((1, "10.00")))
    later = do_request_red_letter(buyer, blue, "buyer", partial((1, "20.00")))
    assert expire_red_letter_requests(timezone.now() + timedelta(hours=71)) == 0
    assert expire_red_letter_requests(later.expires_at) == 2
    assert expire_red_letter_requests(later.expires_at + timedelta(hours=1)) == 0
    confirmation.refresh_from_db()
    later.refresh_from_db()
    assert confirmation.status == later.status == RedLetterStatus.EXPIRED
    assert confirmation.platform_code == "07"
    assert kinds(blue).count("RedLetterExpired") == 2
    assert AuditEntry.objects.filter(action="red_letter.expired", actor="system").count() == 2
    assert_chains_valid()


def test_it_refuses_an_answer_after_the_window_even_before_the_expiry_run(blue, seller, buyer):
    confirmation = do_request_red_letter(seller, blue, "seller", partial((1, "10.00")))
    RedLetterConfirmation.objects.filter(pk=confirmation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(RuleViolation) as raised:
        do_confirm_red_letter(buyer, confirmation)
    assert raised.value.code == "expired"
    out = StringIO()
    call_command("redletter", "expire", stdout=out)
    assert "1" in out.getvalue()
    confirmation.refresh_from_db()
    assert confirmation.status == RedLetterStatus.EXPIRED
    call_command("redletter", "expire", stdout=StringIO())
    assert kinds(blue).count("RedLetterExpired") == 1


def test_it_reverses_an_invoice_to_a_natural_person_without_confirmation(blue_to_person, seller):
    confirmation = do_request_red_letter(seller, blue_to_person, "seller", RedLetterInput(ERROR))
    assert confirmation.status == RedLetterStatus.ISSUED
    assert not confirmation.confirmation_required and confirmation.platform_code == "01"
    blue_to_person.refresh_from_db()
    assert blue_to_person.status == InvoiceStatus.FULLY_RED_FLUSHED
    assert kinds(blue_to_person) == ["InvoiceIssued", "RedLetterRequested", "InvoiceRedFlushed"]
    event = LedgerEvent.objects.get(stream=blue_to_person.stream, kind="RedLetterRequested")
    assert event.payload["confirmation_required"] is False
    assert_chains_valid()


def test_it_needs_confirmation_for_a_partial_reversal_even_to_a_person(blue_to_person, seller):
    request = RedLetterInput(RETURN, full=False, lines=[RedLineRequest(1, Decimal("100.00"))])
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, blue_to_person, "seller", request)
    assert raised.value.code == "buyer_not_registered"


def test_it_reverses_an_unbooked_invoice_without_the_buyers_confirmation(blue, seller):
    confirmation = do_request_red_letter(seller, blue, "seller", RedLetterInput(ERROR))
    assert confirmation.status == RedLetterStatus.ISSUED and not confirmation.confirmation_required
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.FULLY_RED_FLUSHED


def test_it_refuses_to_reverse_a_red_invoice_or_a_fully_flushed_one(blue_to_person, seller):
    confirmation = do_request_red_letter(seller, blue_to_person, "seller", RedLetterInput(ERROR))
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, confirmation.red_invoice, "seller", RedLetterInput(ERROR))
    assert raised.value.code == "red_invoice"
    blue_to_person.refresh_from_db()
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(seller, blue_to_person, "seller", RedLetterInput(ERROR))
    assert raised.value.code == "not_reversible"


# --- Across nodes: B (Shanghai) answers on its own node --------------------------------------


def test_it_sends_a_request_to_the_buyers_node_and_refuses_a_local_answer(
    blue_to_b, seller, finance_b
):
    confirmation = do_request_red_letter(seller, blue_to_b, "seller", partial((1, "100.00")))
    event = LedgerEvent.objects.get(stream=blue_to_b.stream, kind="RedLetterRequested")
    assert OutboxEvent.objects.get(ledger_event=event).subject == (
        "piaotong.v1.11.31.RedLetterRequested"
    )
    with pytest.raises(RuleViolation) as raised:
        do_confirm_red_letter(actor_for_user(finance_b), confirmation)
    assert raised.value.code == "other_node"
    with pytest.raises(RuleViolation) as raised:
        do_request_red_letter(actor_for_user(finance_b), blue_to_b, "buyer", RedLetterInput(ERROR))
    assert raised.value.code == "other_node"


def remote_answer(confirmation: RedLetterConfirmation) -> dict[str, Any]:
    """A confirmation as the buyer's node writes it (docs/red-letter.md)."""
    return {
        "confirmation": str(confirmation.uid),
        "blue_number": confirmation.blue_invoice.number,
        "by": "buyer",
        "answered_by": "shanghai.finance",
        "answered_at": timezone.now().isoformat(),
    }


def test_it_issues_the_red_invoice_when_the_buyers_node_confirms(blue_to_b, seller):
    confirmation = do_request_red_letter(seller, blue_to_b, "seller", partial((1, "100.00")))
    apply_remote_event("RedLetterConfirmed", remote_answer(confirmation))
    confirmation.refresh_from_db()
    assert confirmation.status == RedLetterStatus.ISSUED
    assert confirmation.answered_by_label == "shanghai.finance"
    assert confirmation.red_invoice.total_amount == Decimal("-100.00")
    assert confirmation.red_invoice.issuer_name == "finance.a"
    blue_to_b.refresh_from_db()
    assert blue_to_b.status == InvoiceStatus.PARTIALLY_RED_FLUSHED
    # The answer is the buyer node's event, not ours: this node appends only the flush.
    assert kinds(blue_to_b) == ["InvoiceIssued", "RedLetterRequested", "InvoiceRedFlushed"]
    assert_chains_valid()


def test_it_ignores_a_remote_answer_to_a_request_already_withdrawn(blue_to_b, seller):
    confirmation = do_request_red_letter(seller, blue_to_b, "seller", partial((1, "100.00")))
    do_withdraw_red_letter(seller, confirmation)
    apply_remote_event("RedLetterConfirmed", remote_answer(confirmation))
    confirmation.refresh_from_db()
    assert confirmation.status == RedLetterStatus.WITHDRAWN
    assert not Invoice.objects.filter(red_of=blue_to_b).exists()
    assert AuditEntry.objects.filter(action="red_letter.superseded").count() == 1


def test_it_receives_a_buyer_request_from_the_buyers_node_and_confirms_it(blue_to_b, seller):
    uid = "5b0f0e34-8d2c-4a5e-9d53-0d7d2b0a9c11"
    now = timezone.now()
    payload = {
        "confirmation": uid,
        "blue_number": blue_to_b.number,
        "initiator_side": "buyer",
        "initiator": {"name": "上海测试贸易有限公司"},
        "reason": "01",
        "full": True,
        "lines": [{"position": 1, "amount": "-1000.00", "tax": "-60.00", "quantity": "-2"}],
        "total_amount": "-1000.00",
        "total_tax": "-60.00",
        "total_with_tax": "-1060.00",
        "confirmation_required": True,
        "requested_by": "shanghai.finance",
        "created_at": now.isoformat(),
        "expires_at": (now + timedelta(hours=72)).isoformat(),
    }
    received = apply_remote_event("RedLetterRequested", payload)
    assert apply_remote_event("RedLetterRequested", payload) == received  # delivered twice
    assert isinstance(received, RedLetterConfirmation)
    assert received.status == RedLetterStatus.PENDING and received.total_with_tax == Decimal(
        "-1060.00"
    )
    confirmation = do_confirm_red_letter(seller, received)
    assert confirmation.status == RedLetterStatus.ISSUED
    blue_to_b.refresh_from_db()
    assert blue_to_b.status == InvoiceStatus.FULLY_RED_FLUSHED
    assert RedLetterConfirmation.objects.count() == 1


def test_it_parks_events_about_requests_it_has_not_received(blue_to_b):
    with pytest.raises(redletter.NotYetKnown):
        apply_remote_event(
            "RedLetterConfirmed",
            {"confirmation": "5b0f0e34-8d2c-4a5e-9d53-0d7d2b0a9c12", "by": "buyer"},
        )


def test_it_chains_every_step_on_the_blue_invoices_stream(blue, seller, buyer):
    confirmation = do_request_red_letter(seller, blue, "seller", partial((1, "1.00")))
    do_refuse_red_letter(buyer, confirmation, "no")
    confirmation = do_request_red_letter(buyer, blue, "buyer", partial((1, "2.00")))
    do_confirm_red_letter(seller, confirmation)
    events = list(LedgerEvent.objects.filter(stream=blue.stream).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, 7))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    # Tampering with a payload is caught by `piaotong ledger verify`.
    LedgerEvent.objects.filter(pk=events[2].pk).update(payload=events[2].payload | {"by": "seller"})
    assert [f.chain for f in verify_ledger()] == [f"{blue.stream} (node-11)"]


def test_it_needs_the_buyers_confirmation_once_the_buyer_booked_the_invoice(blue, seller, buyer):
    from piaotong.deduction.actions import do_book_invoice

    do_book_invoice(buyer, blue)
    confirmation = do_request_red_letter(seller, blue, "seller", RedLetterInput(ERROR))
    assert confirmation.status == RedLetterStatus.PENDING and confirmation.confirmation_required
    assert confirmation.platform_code == "02"
    do_confirm_red_letter(buyer, confirmation)
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.FULLY_RED_FLUSHED
