"""Returns through the actions and the database aggregation: output, input, credit chain,
submission locking, amendments, refusals."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import TaxpayerKind
from piaotong.accounts.permissions import Action
from piaotong.deduction.actions import (
    SelectionItem,
    do_apply_statistics,
    do_confirm_deduction,
    do_select_for_deduction,
)
from piaotong.deduction.choices import PeriodStatus
from piaotong.deduction.models import DeductionPeriod
from piaotong.deduction.periods import previous_period
from piaotong.deduction.tests.conftest import hub_marks
from piaotong.filing.actions import do_amend_return, do_prepare_return, do_submit_return
from piaotong.filing.aggregate import drill_down, gather_facts, invoice_counts
from piaotong.filing.choices import ReturnStatus
from piaotong.filing.compute import differences
from piaotong.filing.models import VatReturn
from piaotong.filing.periods import parse_tax_period
from piaotong.filing.tests.conftest import backdate, last_month
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.choices import InvoiceKind
from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation
from piaotong.testing import draft, line, make_org

pytestmark = pytest.mark.django_db
D = Decimal


def laptop(quantity: str = "1") -> object:
    return line(
        tax_code="1090511030000000000",
        item_name="笔记本电脑",
        tax_rate="13%",
        quantity=D(quantity),
        unit_price=D("1000"),
    )


def test_it_computes_output_from_issued_invoices_and_leaves_out_voided(
    issue, org_a, seller_finance
):
    special = issue(lines=[line(), laptop()])  # 1000 @ 6 % + 1000 @ 13 %
    ordinary = issue(kind=InvoiceKind.DIGITAL_ORDINARY)  # 1000 @ 6 %
    voided = hub_marks(issue(kind=InvoiceKind.PAPER_SPECIAL), status="voided")
    backdate(special, ordinary, voided)
    period = parse_tax_period(last_month())
    facts = gather_facts(org_a, period)
    assert {(g.special, g.rate, g.amount, g.tax) for g in facts.output} == {
        (True, "0.06", D("1000.00"), D("60.00")),
        (True, "0.13", D("1000.00"), D("130.00")),
        (False, "0.06", D("1000.00"), D("60.00")),
    }
    assert invoice_counts(org_a, period) == {"blue": 2, "red": 0, "voided": 1}
    draft_return = do_prepare_return(seller_finance, org_a, last_month())
    assert draft_return.numbers["lines"]["output_tax"] == "250.00"
    assert draft_return.payable == D("250.00")
    output = drill_down(org_a, period, "output", {"rate": "0.13"})
    assert list(output) == [special]
    assert set(drill_down(org_a, period, "output", {"special": "0"})) == {ordinary}
    assert list(drill_down(org_a, period, "voided", {})) == [voided]


def test_it_gathers_facts_in_four_queries(issue, org_a):
    backdate(issue(), issue())
    with CaptureQueriesContext(connection) as queries:
        gather_facts(org_a, parse_tax_period(last_month()))
    assert len(queries) == 4


def test_input_tax_comes_from_confirmed_deductions_only(issue, buyer, buyer_actor):
    period = last_month()
    confirmed = [issue(), issue(lines=[laptop()])]
    pending = issue()
    backdate(*confirmed, pending)
    do_select_for_deduction(
        buyer_actor,
        buyer,
        period,
        [SelectionItem(confirmed[0]), SelectionItem(confirmed[1], effective_tax=D("100.00"))],
    )
    do_apply_statistics(buyer_actor, buyer, period)
    facts = gather_facts(buyer, parse_tax_period(period))
    assert facts.input == ()  # counted, not yet confirmed
    do_confirm_deduction(buyer_actor, buyer, period)
    facts = gather_facts(buyer, parse_tax_period(period))
    [group] = facts.input
    assert (group.invoices, group.face_tax, group.effective_tax) == (2, D("190.00"), D("160.00"))
    assert set(drill_down(buyer, parse_tax_period(period), "input", {})) == set(confirmed)


def test_submission_freezes_numbers_and_locks_the_deduction_period(
    issue, org_a, seller_finance, buyer, buyer_actor
):
    period = last_month()
    backdate(issue())
    do_prepare_return(seller_finance, org_a, period)
    submitted = do_submit_return(seller_finance, org_a, period)
    assert submitted.status == ReturnStatus.SUBMITTED and len(submitted.content_hash) == 64
    deduction_period = DeductionPeriod.objects.get(buyer=org_a, period=period)
    assert deduction_period.status == PeriodStatus.CONFIRMED and deduction_period.closed_by_return
    with pytest.raises(RuleViolation) as excinfo:
        do_prepare_return(seller_finance, org_a, period)
    assert excinfo.value.code == "already_submitted"
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
    assert (
        AuditEntry.objects.filter(action="return.submitted", organisation_id=org_a.pk).count() == 1
    )


def test_submission_refuses_a_stale_draft_and_pending_deductions(
    issue, buyer, buyer_actor, seller_finance
):
    period = last_month()
    invoice = issue()
    backdate(invoice)
    do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(invoice)])
    do_prepare_return(buyer_actor, buyer, period)
    with pytest.raises(RuleViolation) as excinfo:
        do_submit_return(buyer_actor, buyer, period)
    assert excinfo.value.code == "deduction_not_confirmed"
    do_apply_statistics(buyer_actor, buyer, period)
    do_confirm_deduction(buyer_actor, buyer, period)
    with pytest.raises(RuleViolation) as excinfo:  # input tax changed since the draft
        do_submit_return(buyer_actor, buyer, period)
    assert excinfo.value.code == "numbers_changed"
    assert do_prepare_return(buyer_actor, buyer, period).numbers["lines"]["input_tax"] == "60.00"
    submitted = do_submit_return(buyer_actor, buyer, period)
    assert submitted.credit_carried_forward == D("60.00") and submitted.payable == D("0.00")


def test_credit_is_carried_into_the_next_period(issue, buyer, buyer_actor, org_a, clerk_actor):
    period = last_month()
    before = previous_period(period)
    invoice = issue()
    backdate(invoice)
    do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(invoice)])
    do_apply_statistics(buyer_actor, buyer, period)
    do_confirm_deduction(buyer_actor, buyer, period)
    # The buyer filed the month before last with 25.00 of credit left over.
    VatReturn.objects.create(
        organisation=buyer,
        period=before,
        version=1,
        status=ReturnStatus.SUBMITTED,
        taxpayer_kind="general",
        numbers={},
        payable=D("0"),
        credit_carried_forward=D("25.00"),
        prepared_at="2025-01-01T00:00Z",
    )
    lines = do_prepare_return(buyer_actor, buyer, period).numbers["lines"]
    assert lines["credit_brought_forward"] == "25.00"
    assert lines["credit_carried_forward"] == "85.00"


def test_an_amendment_is_a_new_version_and_supersedes_on_submission(issue, org_a, seller_finance):
    period = last_month()
    backdate(issue())
    do_prepare_return(seller_finance, org_a, period)
    first = do_submit_return(seller_finance, org_a, period)
    with pytest.raises(RuleViolation):
        do_amend_return(seller_finance, org_a, period, "  ")
    backdate(issue())  # a late invoice of the period
    amendment = do_amend_return(seller_finance, org_a, period, "A late invoice")
    assert amendment.version == 2 and amendment.status == ReturnStatus.DRAFT
    changes = {
        c.name: c.delta for c in differences(first.numbers["lines"], amendment.numbers["lines"])
    }
    assert changes["output_tax"] == D("60.00") and changes["payable"] == D("60.00")
    do_submit_return(seller_finance, org_a, period)
    first.refresh_from_db()
    assert first.status == ReturnStatus.SUPERSEDED
    assert [v.status for v in VatReturn.objects.filter(organisation=org_a).order_by("version")] == [
        "superseded",
        "submitted",
    ]


def test_it_refuses_unended_periods_quarters_for_general_taxpayers_and_other_roles(
    org_a, seller_finance, clerk_actor
):
    from django.utils import timezone

    from piaotong.deduction.periods import period_of

    do_prepare_return(seller_finance, org_a, period_of(timezone.localdate()))
    with pytest.raises(RuleViolation) as excinfo:
        do_submit_return(seller_finance, org_a, period_of(timezone.localdate()))
    assert excinfo.value.code == "period_not_ended"
    with pytest.raises(RuleViolation) as excinfo:
        do_prepare_return(seller_finance, org_a, "2025Q1")
    assert excinfo.value.code == "quarter_not_allowed"
    with pytest.raises(PermissionDenied):
        do_prepare_return(clerk_actor, org_a, last_month())


def test_a_small_scale_taxpayer_files_a_quarter_with_the_exemption(org_b):
    from datetime import date

    from django.utils import timezone

    small = make_org("北京小规模商店", "110105", "MA01XMAL", taxpayer_kind=TaxpayerKind.SMALL_SCALE)
    actor = Actor(grants={small.pk: frozenset(Action)})
    invoices = [
        do_issue_new_invoice(
            actor,
            small,
            draft(org_b, kind=kind, lines=[line(tax_rate="1%", unit_price=D("20000"))]),
        )
        for kind in (InvoiceKind.DIGITAL_ORDINARY, InvoiceKind.DIGITAL_SPECIAL)
    ]  # 40,000 each at 1 %
    today = timezone.localdate()
    quarter_start = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    last_quarter = parse_tax_period(f"{today.year}Q{(today.month - 1) // 3 + 1}").previous()
    backdate(*invoices, day=last_quarter.start)
    assert quarter_start > last_quarter.start
    numbers = do_prepare_return(actor, small, last_quarter.code).numbers
    assert numbers["below_threshold"] is True
    assert numbers["lines"]["tax_due"] == "400.00"  # the special invoice's sales only
    assert numbers["lines"]["small_business_exempt_sales"] == "40000.00"
    submitted = do_submit_return(actor, small, last_quarter.code)
    assert submitted.payable == D("400.00")
    assert not DeductionPeriod.objects.filter(buyer=small).exists()


def test_buyer_of_another_region_cannot_file_here(org_b):
    actor = Actor(grants={org_b.pk: frozenset(Action)})
    with pytest.raises(RuleViolation) as excinfo:
        do_prepare_return(actor, org_b, last_month())
    assert excinfo.value.code == "buyer_not_in_region"


def test_red_invoices_count_negative_and_transfer_out_deducted_input(
    issue, org_a, seller_finance, buyer, buyer_actor
):
    """The buyer deducts a 1,000.00 @ 6 % invoice in full, then accepts a 400.00 allowance
    (销售折让): the seller's output is 60.00 - 24.00, the buyer transfers 24.00 out."""
    from piaotong.filing.aggregate import transfer_out
    from piaotong.filing.tests.conftest import last_month_day
    from piaotong.invoices.models import Invoice
    from piaotong.invoices.redletter import (
        RedLetterInput,
        do_confirm_red_letter,
        do_request_red_letter,
    )
    from piaotong.invoices.redletter_rules import RedLineRequest

    period = last_month()
    blue = issue()
    backdate(blue)
    do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(blue)])
    do_apply_statistics(buyer_actor, buyer, period)
    do_confirm_deduction(buyer_actor, buyer, period)
    allowance = RedLetterInput(reason="04", full=False, lines=[RedLineRequest(1, D("400.00"))])
    confirmation = do_request_red_letter(seller_finance, blue, "seller", allowance)
    do_confirm_red_letter(buyer_actor, confirmation)
    red = Invoice.objects.get(red_of=blue)
    assert (red.total_amount, red.total_tax) == (D("-400.00"), D("-24.00"))
    # Issued after the deduction was selected; dated into the same month for this return.
    Invoice.objects.filter(pk=red.pk).update(issue_date=last_month_day())

    tax_period = parse_tax_period(period)
    assert invoice_counts(org_a, tax_period) == {"blue": 1, "red": 1, "voided": 0}
    seller_return = do_prepare_return(seller_finance, org_a, period)
    assert seller_return.numbers["lines"]["output_tax"] == "36.00"
    assert set(drill_down(org_a, tax_period, "output", {})) == {blue, red}
    assert transfer_out(buyer, tax_period) == D("24.00")
    buyer_return = do_prepare_return(buyer_actor, buyer, period)
    assert buyer_return.numbers["lines"]["input_tax"] == "60.00"
    assert D(buyer_return.numbers["lines"]["transfer_out"]) == D("24.00")


def test_the_auditor_may_not_prepare(org_a, auditor):
    with pytest.raises(PermissionDenied):
        do_prepare_return(actor_for_user(auditor), org_a, last_month())
