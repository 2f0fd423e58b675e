"""Booking, selection, revocation, statistics and confirmation through the actions: rows,
ledger events on the invoice streams, audit entries, outbox rows, and every refusal."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import TaxpayerKind
from piaotong.deduction.actions import (
    SelectionErrors,
    SelectionItem,
    do_apply_statistics,
    do_book_invoice,
    do_close_period_for_return,
    do_confirm_deduction,
    do_revoke_selection,
    do_revoke_statistics,
    do_select_for_deduction,
)
from piaotong.deduction.choices import PeriodStatus, Purpose
from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import next_period, period_of
from piaotong.deduction.queries import buyer_usage
from piaotong.deduction.tests.conftest import hub_marks
from piaotong.exchange.models import OutboxEvent
from piaotong.invoices.actions import BulkViolations
from piaotong.invoices.choices import InvoiceKind
from piaotong.ledger.chain import audit_body, event_body, verify_records
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.lib.errors import RuleViolation
from piaotong.testing import line, make_org

pytestmark = pytest.mark.django_db


def this_period() -> str:
    return period_of(date.today())


def codes(excinfo: pytest.ExceptionInfo[SelectionErrors]) -> dict[int, list[str]]:
    return {i: [v.code for v in errors] for i, errors in excinfo.value.items.items()}


def test_it_books_an_invoice_with_ledger_audit_and_outbox(issue, buyer_actor):
    invoice = issue()
    booking = do_book_invoice(buyer_actor, invoice)
    assert booking.buyer_id == invoice.buyer_id and booking.booked_by_label == "buyer.finance"
    events = list(LedgerEvent.objects.filter(stream=invoice.stream).order_by("seq"))
    assert [e.kind for e in events] == ["InvoiceIssued", "InvoiceBooked"]
    assert verify_records(events, event_body) is None
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
    assert AuditEntry.objects.filter(action="purchase.booked", target=invoice.stream).count() == 1
    outbox = OutboxEvent.objects.get(ledger_event=events[1])
    assert outbox.subject == "piaotong.v1.11.11.InvoiceBooked"
    assert buyer_usage(invoice) == "booked"


def test_it_refuses_to_book_twice(issue, buyer_actor):
    invoice = issue()
    do_book_invoice(buyer_actor, invoice)
    with pytest.raises(RuleViolation) as excinfo:
        do_book_invoice(buyer_actor, invoice)
    assert excinfo.value.code == "already_booked"
    assert Booking.objects.count() == 1


def test_it_refuses_booking_a_flagged_invoice(issue, buyer_actor):
    invoice = hub_marks(issue(), authority_flag="abnormal")
    with pytest.raises(RuleViolation) as excinfo:
        do_book_invoice(buyer_actor, invoice)
    assert excinfo.value.code == "flagged" and "异常" in str(excinfo.value)


def test_it_lets_only_the_buyers_booking_roles_book(issue, buyer_clerk, clerk_actor):
    invoice = issue()
    with pytest.raises(PermissionDenied):
        do_book_invoice(actor_for_user(buyer_clerk), invoice)
    with pytest.raises(PermissionDenied):  # the seller's clerk
        do_book_invoice(clerk_actor, invoice)
    assert not Booking.objects.exists()


def test_it_refuses_buyer_side_facts_for_a_buyer_of_another_region(issue, org_b, settings):
    from piaotong.accounts.access import Actor
    from piaotong.accounts.permissions import Action

    invoice = issue(to=org_b)
    actor = Actor(grants={org_b.pk: frozenset(Action)})
    with pytest.raises(RuleViolation) as excinfo:
        do_book_invoice(actor, invoice)
    assert excinfo.value.code == "buyer_not_in_region" and "31" in str(excinfo.value)
    with pytest.raises(RuleViolation) as excinfo:
        do_select_for_deduction(actor, org_b, this_period(), [SelectionItem(invoice)])
    assert excinfo.value.code == "buyer_not_in_region"
    assert not DeductionSelection.objects.exists()


def test_it_selects_with_the_full_face_tax_by_default(issue, buyer, buyer_actor):
    invoice = issue()
    [selection] = do_select_for_deduction(
        buyer_actor, buyer, this_period(), [SelectionItem(invoice)]
    )
    assert selection.purpose == Purpose.DEDUCT
    assert selection.face_tax == selection.effective_tax == invoice.total_tax == Decimal("60.00")
    assert selection.face_amount == invoice.total_amount
    event = LedgerEvent.objects.get(stream=invoice.stream, kind="DeductionSelected")
    assert event.payload["effective_tax"] == "60.00" and event.payload["period"] == this_period()
    assert OutboxEvent.objects.filter(ledger_event=event).exists()
    assert buyer_usage(invoice) == "selected"


def test_it_selects_less_than_the_face_tax_and_not_deductible_with_a_reason(
    issue, buyer, buyer_actor
):
    partial, personal = issue(), issue()
    items = [
        SelectionItem(partial, effective_tax=Decimal("12.34")),
        SelectionItem(personal, deduct=False, reason="3"),
    ]
    selections = do_select_for_deduction(buyer_actor, buyer, this_period(), items)
    assert [(s.purpose, s.effective_tax, s.reason) for s in selections] == [
        ("deduct", Decimal("12.34"), ""),
        ("not_deduct", Decimal("0.00"), "3"),
    ]


def test_it_selects_nothing_when_one_item_is_wrong_and_says_which(issue, buyer, buyer_actor):
    good, ordinary = issue(), issue(kind=InvoiceKind.DIGITAL_ORDINARY)
    flagged = hub_marks(issue(), authority_flag="out_of_control")
    voided = hub_marks(issue(), status="voided")
    flushed = hub_marks(issue(), status="fully_red_flushed")
    items = [
        SelectionItem(good),
        SelectionItem(ordinary),
        SelectionItem(flagged),
        SelectionItem(voided),
        SelectionItem(flushed),
        SelectionItem(good),
        SelectionItem(issue(), effective_tax=Decimal("60.01")),
        SelectionItem(issue(), deduct=False),
    ]
    with pytest.raises(SelectionErrors) as excinfo:
        do_select_for_deduction(buyer_actor, buyer, this_period(), items)
    assert codes(excinfo) == {
        1: ["not_deductible_kind"],
        2: ["flagged"],
        3: ["status"],
        4: ["status"],
        5: ["duplicate"],
        6: ["effective_tax_out_of_range"],
        7: ["reason_required"],
    }
    assert isinstance(excinfo.value, BulkViolations)
    assert not DeductionSelection.objects.exists()
    assert not LedgerEvent.objects.filter(kind="DeductionSelected").exists()
    assert not DeductionPeriod.objects.exists()


def test_it_refuses_an_invoice_of_another_buyer(issue, buyer, buyer_actor, org_b):
    foreign = issue(to=org_b)
    with pytest.raises(SelectionErrors) as excinfo:
        do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(foreign)])
    assert codes(excinfo) == {0: ["not_received"]}


def test_it_never_selects_an_invoice_in_two_periods(issue, buyer, buyer_actor):
    invoice = issue()
    do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(invoice)])
    with pytest.raises(SelectionErrors) as excinfo:
        do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(invoice)])
    assert codes(excinfo) == {0: ["already_selected"]}


def test_it_refuses_future_periods_and_invoices_issued_after_the_period(issue, buyer, buyer_actor):
    invoice = issue()
    with pytest.raises(RuleViolation) as excinfo:
        do_select_for_deduction(
            buyer_actor, buyer, next_period(this_period()), [SelectionItem(invoice)]
        )
    assert excinfo.value.code == "future_period"
    with pytest.raises(SelectionErrors) as errors:
        do_select_for_deduction(buyer_actor, buyer, "202001", [SelectionItem(invoice)])
    assert codes(errors) == {0: ["issued_after_period"]}
    with pytest.raises(RuleViolation) as excinfo:
        do_select_for_deduction(buyer_actor, buyer, "2025-13", [SelectionItem(invoice)])
    assert excinfo.value.code == "bad_period"


def test_it_refuses_deduction_for_a_small_scale_buyer(org_a, clerk_actor):
    from piaotong.accounts.access import Actor
    from piaotong.accounts.permissions import Action
    from piaotong.invoices.actions import do_issue_new_invoice
    from piaotong.testing import draft

    small = make_org("北京小规模采购", "110105", "MA01XMLB", taxpayer_kind=TaxpayerKind.SMALL_SCALE)
    invoice = do_issue_new_invoice(clerk_actor, org_a, draft(small))
    with pytest.raises(RuleViolation) as excinfo:
        do_select_for_deduction(
            Actor(grants={small.pk: frozenset(Action)}),
            small,
            this_period(),
            [SelectionItem(invoice)],
        )
    assert excinfo.value.code == "small_scale_no_deduction"


def test_it_revokes_a_selection_while_the_period_is_open(issue, buyer, buyer_actor):
    invoice = issue()
    do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(invoice)])
    revoked = do_revoke_selection(buyer_actor, invoice)
    assert revoked.revoked_at is not None and revoked.revoked_by_label == "buyer.finance"
    assert buyer_usage(invoice) == ""
    kinds = list(
        LedgerEvent.objects.filter(stream=invoice.stream)
        .order_by("seq")
        .values_list("kind", flat=True)
    )
    assert kinds == ["InvoiceIssued", "DeductionSelected", "DeductionSelectionRevoked"]
    # Selectable again, and the history is kept.
    do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(invoice)])
    assert DeductionSelection.objects.filter(invoice=invoice).count() == 2


def test_the_pipeline_statistics_revocable_then_confirmed_and_locked(issue, buyer, buyer_actor):
    period = this_period()
    first = issue(
        lines=[
            line(),
            line(
                tax_code="1090511030000000000",
                item_name="笔记本电脑",
                tax_rate="13%",
                quantity=Decimal("1"),
                unit_price=Decimal("1000"),
            ),
        ]
    )
    second = issue()
    do_select_for_deduction(
        buyer_actor,
        buyer,
        period,
        [SelectionItem(first), SelectionItem(second, deduct=False, reason="5")],
    )
    counted = do_apply_statistics(buyer_actor, buyer, period)
    assert counted.status == PeriodStatus.COUNTED
    stats = counted.statistics
    assert stats["totals"]["deduct"] == {
        "invoices": 1,
        "amount": "2000.00",
        "face_tax": "190.00",
        "effective_tax": "190.00",
    }
    assert stats["totals"]["not_deduct"]["effective_tax"] == "0.00"
    assert {(r["purpose"], r["rate"], r["tax"]) for r in stats["by_rate"]} == {
        ("deduct", "0.06", "60.00"),
        ("deduct", "0.13", "130.00"),
        ("not_deduct", "0.06", "60.00"),
    }
    with pytest.raises(RuleViolation) as excinfo:  # counted: selections frozen
        do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(issue())])
    assert excinfo.value.code == "period_status"
    do_revoke_statistics(buyer_actor, buyer, period)
    do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(issue())])
    do_apply_statistics(buyer_actor, buyer, period)
    confirmed = do_confirm_deduction(buyer_actor, buyer, period)
    assert confirmed.status == PeriodStatus.CONFIRMED and confirmed.confirmed_at is not None
    assert buyer_usage(first) == "confirmed"
    event = LedgerEvent.objects.get(stream=first.stream, kind="DeductionConfirmed")
    assert (
        OutboxEvent.objects.get(ledger_event=event).subject
        == "piaotong.v1.11.11.DeductionConfirmed"
    )
    assert LedgerEvent.objects.filter(kind="DeductionStatisticsApplied").count() == 2
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
    for action in (
        lambda: do_revoke_statistics(buyer_actor, buyer, period),
        lambda: do_revoke_selection(buyer_actor, first),
        lambda: do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(issue())]),
    ):
        with pytest.raises(RuleViolation) as excinfo:
            action()
        assert excinfo.value.code == "period_status"


def test_it_confirms_only_after_statistics(issue, buyer, buyer_actor):
    do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(issue())])
    with pytest.raises(RuleViolation) as excinfo:
        do_confirm_deduction(buyer_actor, buyer, this_period())
    assert excinfo.value.code == "period_status" and "申请统计" in str(excinfo.value)


def test_it_confirms_a_period_without_selections_as_one_period_event(buyer, buyer_actor):
    do_apply_statistics(buyer_actor, buyer, this_period())
    confirmed = do_confirm_deduction(buyer_actor, buyer, this_period())
    assert confirmed.status == PeriodStatus.CONFIRMED
    event = LedgerEvent.objects.get(stream=confirmed.stream, kind="DeductionPeriodConfirmed")
    assert event.payload["confirmed_by"] == "buyer.finance"
    assert event.payload["statistics"] == confirmed.statistics
    assert not event.payload["closed_by_return"]
    assert OutboxEvent.objects.get(ledger_event=event).subject == (
        "piaotong.v1.11.11.DeductionPeriodConfirmed"
    )


def test_it_rechecks_invoices_at_confirmation(issue, buyer, buyer_actor):
    invoice = issue()
    do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(invoice)])
    do_apply_statistics(buyer_actor, buyer, this_period())
    hub_marks(invoice, authority_flag="abnormal")
    with pytest.raises(SelectionErrors) as excinfo:
        do_confirm_deduction(buyer_actor, buyer, this_period())
    assert codes(excinfo) == {0: ["changed_since_selection"]}
    assert DeductionPeriod.objects.get().status == PeriodStatus.COUNTED


def test_confirmation_needs_the_confirm_role(issue, buyer, buyer_actor, buyer_clerk):
    do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(issue())])
    do_apply_statistics(buyer_actor, buyer, this_period())
    with pytest.raises(PermissionDenied):
        do_confirm_deduction(actor_for_user(buyer_clerk), buyer, this_period())


def test_filing_closes_an_empty_period_and_refuses_a_pending_one(issue, buyer, buyer_actor):
    from django.db import transaction

    with transaction.atomic():
        closed = do_close_period_for_return(buyer_actor, buyer, "202401")
    assert closed.status == PeriodStatus.CONFIRMED and closed.closed_by_return
    do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(issue())])
    with pytest.raises(RuleViolation) as excinfo, transaction.atomic():
        do_close_period_for_return(buyer_actor, buyer, this_period())
    assert excinfo.value.code == "deduction_not_confirmed"


def test_it_selects_a_partially_red_flushed_invoice_for_its_remaining_tax(
    issue, org_a, buyer, buyer_actor
):
    """A 销售折让 of 400.00 on a 1,000.00 line at 6 %: 24.00 of the 60.00 tax is reversed by the
    red invoice, so what can still be deducted is 36.00."""
    from piaotong.accounts.choices import Role
    from piaotong.invoices.choices import InvoiceStatus
    from piaotong.invoices.redletter import (
        RedLetterInput,
        do_confirm_red_letter,
        do_request_red_letter,
    )
    from piaotong.invoices.redletter_rules import RedLineRequest
    from piaotong.testing import make_user

    blue = issue()
    seller = actor_for_user(make_user("seller.finance", org_a, Role.FINANCE_MANAGER))
    allowance = RedLetterInput(
        reason="04", full=False, lines=[RedLineRequest(1, Decimal("400.00"))]
    )
    confirmation = do_request_red_letter(seller, blue, "seller", allowance)
    do_confirm_red_letter(buyer_actor, confirmation)
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.PARTIALLY_RED_FLUSHED

    with pytest.raises(BulkViolations):  # more than what is left is refused
        do_select_for_deduction(
            buyer_actor,
            buyer,
            this_period(),
            [SelectionItem(blue, effective_tax=Decimal("36.01"))],
        )
    [selection] = do_select_for_deduction(buyer_actor, buyer, this_period(), [SelectionItem(blue)])

    assert selection.face_tax == selection.effective_tax == Decimal("36.00")
