"""Dual review (双人复核): drafts, submission, approval by a second user, rejection."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.actions import do_grant_role
from piaotong.accounts.choices import Role
from piaotong.invoices.actions import (
    do_approve_invoice,
    do_create_draft,
    do_issue_invoice,
    do_issue_new_invoice,
    do_reject_invoice,
    do_submit_for_review,
    do_update_draft,
)
from piaotong.invoices.choices import InvoiceStatus
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.testing import OPERATOR, draft, line

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed_org(org_a):
    org_a.requires_dual_review = True
    org_a.save()
    return org_a


def test_it_saves_a_draft_without_a_number_or_ledger_event(org_a, org_b, clerk_actor):
    invoice = do_create_draft(clerk_actor, org_a, draft(org_b))
    assert invoice.status == InvoiceStatus.DRAFT and invoice.number is None
    assert not LedgerEvent.objects.exists()
    assert AuditEntry.objects.filter(action="invoice.drafted").count() == 1


def test_it_issues_a_draft_directly_without_dual_review(org_a, org_b, clerk_actor):
    invoice = do_issue_invoice(clerk_actor, do_create_draft(clerk_actor, org_a, draft(org_b)))
    assert invoice.status == InvoiceStatus.ISSUED and len(invoice.number) == 20


def test_it_requires_review_when_the_organisation_says_so(reviewed_org, org_b, clerk_actor):
    with pytest.raises(RuleViolation) as excinfo:
        do_issue_new_invoice(clerk_actor, reviewed_org, draft(org_b))
    assert excinfo.value.code == "review_required"
    saved = do_create_draft(clerk_actor, reviewed_org, draft(org_b))
    with pytest.raises(RuleViolation):
        do_issue_invoice(clerk_actor, saved)


def test_it_lets_a_second_user_approve_and_issue(reviewed_org, org_b, clerk_actor, reviewer):
    pending = do_submit_for_review(
        clerk_actor, do_create_draft(clerk_actor, reviewed_org, draft(org_b))
    )
    assert pending.status == InvoiceStatus.PENDING_REVIEW
    issued = do_approve_invoice(actor_for_user(reviewer), pending)
    assert issued.status == InvoiceStatus.ISSUED
    assert issued.reviewer_name == "reviewer" and issued.issuer_name == "clerk"
    assert (
        LedgerEvent.objects.get(stream=issued.stream).payload["invoice"]["reviewer"] == "reviewer"
    )


def test_it_refuses_approval_of_ones_own_draft(reviewed_org, org_b, clerk):
    do_grant_role(OPERATOR, clerk, reviewed_org, Role.REVIEWER)
    both = actor_for_user(clerk)
    pending = do_submit_for_review(both, do_create_draft(both, reviewed_org, draft(org_b)))
    with pytest.raises(RuleViolation) as excinfo:
        do_approve_invoice(both, pending)
    assert excinfo.value.code == "self_review"
    pending.refresh_from_db()
    assert pending.status == InvoiceStatus.PENDING_REVIEW


def test_it_refuses_approval_by_a_clerk_without_the_reviewer_role(
    reviewed_org, org_b, clerk_actor, second_clerk
):
    pending = do_submit_for_review(
        clerk_actor, do_create_draft(clerk_actor, reviewed_org, draft(org_b))
    )
    with pytest.raises(PermissionDenied):
        do_approve_invoice(actor_for_user(second_clerk), pending)


def test_it_sends_a_rejected_draft_back_with_the_reason(reviewed_org, org_b, clerk_actor, reviewer):
    pending = do_submit_for_review(
        clerk_actor, do_create_draft(clerk_actor, reviewed_org, draft(org_b))
    )
    with pytest.raises(RuleViolation):
        do_reject_invoice(actor_for_user(reviewer), pending, "  ")
    back = do_reject_invoice(actor_for_user(reviewer), pending, "买方地址有误")
    assert back.status == InvoiceStatus.DRAFT and back.review_note == "买方地址有误"
    with pytest.raises(RuleViolation):
        do_approve_invoice(actor_for_user(reviewer), back)


def test_it_refuses_submitting_twice(org_a, org_b, clerk_actor):
    pending = do_submit_for_review(clerk_actor, do_create_draft(clerk_actor, org_a, draft(org_b)))
    with pytest.raises(RuleViolation) as excinfo:
        do_submit_for_review(clerk_actor, pending)
    assert excinfo.value.code == "wrong_status"


def test_it_validates_drafts_like_invoices(org_a, org_b, clerk_actor):
    with pytest.raises(RuleViolations):
        do_create_draft(clerk_actor, org_a, draft(org_b, buyer_tax_id=""))


def test_it_lets_the_author_correct_a_rejected_draft(reviewed_org, org_b, clerk_actor, reviewer):
    pending = do_submit_for_review(
        clerk_actor, do_create_draft(clerk_actor, reviewed_org, draft(org_b))
    )
    back = do_reject_invoice(actor_for_user(reviewer), pending, "金额有误")
    corrected = do_update_draft(
        clerk_actor, back, draft(org_b, lines=[line(quantity=Decimal("3"))]), submit=True
    )
    assert corrected.status == InvoiceStatus.PENDING_REVIEW
    assert corrected.total_amount == Decimal("1500.00")
    assert list(corrected.lines.values_list("position", flat=True)) == [1]
    issued = do_approve_invoice(actor_for_user(reviewer), corrected)
    assert issued.total_with_tax == Decimal("1590.00")
    actions = list(AuditEntry.objects.filter(target=issued.stream).values_list("action", flat=True))
    assert actions == [
        "invoice.drafted",
        "invoice.submitted",
        "invoice.rejected",
        "invoice.draft_updated",
        "invoice.submitted",
        "invoice.issued",
    ]


def test_it_refuses_to_update_anything_but_a_draft(org_a, org_b, clerk_actor):
    issued = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    with pytest.raises(RuleViolation) as excinfo:
        do_update_draft(clerk_actor, issued, draft(org_b))
    assert excinfo.value.code == "wrong_status"


def test_it_creates_a_draft_straight_into_review(reviewed_org, org_b, clerk_actor):
    invoice = do_create_draft(clerk_actor, reviewed_org, draft(org_b), submit=True)
    assert invoice.status == InvoiceStatus.PENDING_REVIEW
