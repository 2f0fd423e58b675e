"""Permission changes under maker-checker (权限变更审批): one admin asks, another decides.

Personas: A's two admins (`admin`, `second_admin`), A's clerk and reviewer from conftest, and
the admin of organisation B.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.actions import do_grant_role
from piaotong.accounts.choices import Role, RoleChange, RoleChangeStatus
from piaotong.accounts.models import Membership, Organisation, RoleChangeRequest, User
from piaotong.accounts.role_requests import (
    do_approve_role_change,
    do_reject_role_change,
    do_request_role_change,
    do_withdraw_role_change,
)
from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.testing import OPERATOR, make_user

pytestmark = pytest.mark.django_db
GRANT, REVOKE = RoleChange.GRANT, RoleChange.REVOKE


@pytest.fixture
def admin(org_a):
    return make_user("admin", org_a, Role.ORG_ADMIN)


@pytest.fixture
def second_admin(org_a):
    return make_user("admin2", org_a, Role.ORG_ADMIN)


@pytest.fixture
def admin_b(org_b):
    return make_user("admin_b", org_b, Role.ORG_ADMIN)


def ask(
    user: User,
    org: Organisation,
    target: User,
    role: Role = Role.REVIEWER,
    change: RoleChange = GRANT,
    reason: str = "Covers the review desk.",
) -> RoleChangeRequest:
    return do_request_role_change(actor_for_user(user), org, target, role, change, reason)


def holds(user, org, role) -> bool:
    return Membership.objects.filter(user=user, organisation=org, role=role).exists()


def audit_actions(org) -> list[str]:
    """Role audit entries written by people (the fixtures' bootstrap grants are the system's)."""
    return list(
        AuditEntry.objects.filter(organisation_id=org.pk, action__startswith="role")
        .exclude(actor=OPERATOR.principal)
        .order_by("seq")
        .values_list("action", flat=True)
    )


def test_it_grants_a_role_only_once_another_admin_approves(org_a, admin, second_admin, clerk):
    request = ask(admin, org_a, clerk)
    assert request.status == RoleChangeStatus.PENDING
    assert not holds(clerk, org_a, Role.REVIEWER)

    approved = do_approve_role_change(actor_for_user(second_admin), request, "Agreed.")

    assert holds(clerk, org_a, Role.REVIEWER)
    assert approved.status == RoleChangeStatus.APPROVED
    assert approved.decided_by == second_admin and approved.decided_at is not None
    assert approved.decision_note == "Agreed."
    assert audit_actions(org_a) == ["role_change.requested", "role_change.approved", "role.granted"]
    requested = AuditEntry.objects.get(action="role_change.requested")
    assert requested.actor == f"user:{admin.pk}" and requested.target == "user:clerk"
    assert requested.details == {
        "request": request.pk,
        "role": "reviewer",
        "change": "grant",
        "reason": "Covers the review desk.",
    }
    assert AuditEntry.objects.latest("seq").actor == f"user:{second_admin.pk}"
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None


def test_it_revokes_a_role_once_approved(org_a, admin, second_admin, reviewer):
    request = ask(admin, org_a, reviewer, change=REVOKE, reason="Moved to sales.")
    assert holds(reviewer, org_a, Role.REVIEWER)
    do_approve_role_change(actor_for_user(second_admin), request)
    assert not holds(reviewer, org_a, Role.REVIEWER)
    assert audit_actions(org_a)[-1] == "role.revoked"


def test_it_refuses_self_approval(org_a, admin, clerk):
    request = ask(admin, org_a, clerk)
    with pytest.raises(RuleViolation) as refused:
        do_approve_role_change(actor_for_user(admin), request)
    assert refused.value.code == "self_approval" and refused.value.field == "decided_by"
    assert not holds(clerk, org_a, Role.REVIEWER)
    request.refresh_from_db()
    assert request.status == RoleChangeStatus.PENDING
    assert "role_change.approved" not in audit_actions(org_a)


def test_it_refuses_self_approval_to_an_admin_of_two_organisations(org_a, org_b, admin, clerk):
    do_grant_role(OPERATOR, admin, org_b, Role.ORG_ADMIN)
    request = ask(admin, org_a, clerk)
    with pytest.raises(RuleViolation) as refused:
        do_approve_role_change(actor_for_user(admin), request)
    assert refused.value.code == "self_approval"


def test_it_refuses_self_rejection_too(org_a, admin, clerk):
    request = ask(admin, org_a, clerk)
    with pytest.raises(RuleViolation) as refused:
        do_reject_role_change(actor_for_user(admin), request, "Changed my mind.")
    assert refused.value.code == "self_approval"


def test_it_refuses_self_elevation(org_a, admin, second_admin):
    request = ask(admin, org_a, second_admin, role=Role.FINANCE_MANAGER)
    with pytest.raises(RuleViolation) as refused:
        do_approve_role_change(actor_for_user(second_admin), request)
    assert refused.value.code == "self_elevation"
    assert not holds(second_admin, org_a, Role.FINANCE_MANAGER)

    third_admin = make_user("admin3", org_a, Role.ORG_ADMIN)
    do_approve_role_change(actor_for_user(third_admin), request)
    assert holds(second_admin, org_a, Role.FINANCE_MANAGER)


def test_it_lets_nobody_block_their_own_revocation(org_a, admin, second_admin):
    request = ask(admin, org_a, second_admin, role=Role.ORG_ADMIN, change=REVOKE, reason="Left.")
    with pytest.raises(RuleViolation) as refused:
        do_reject_role_change(actor_for_user(second_admin), request, "I am still here.")
    assert refused.value.code == "self_elevation"


def test_it_refuses_a_second_pending_request_for_the_same_role(org_a, admin, second_admin, clerk):
    ask(admin, org_a, clerk)
    with pytest.raises(RuleViolation) as refused:
        ask(second_admin, org_a, clerk, reason="Also needed.")
    assert refused.value.code == "pending_exists" and refused.value.field == "role"
    assert RoleChangeRequest.objects.count() == 1
    ask(second_admin, org_a, clerk, role=Role.AUDITOR)  # another role is another request


def test_it_enforces_one_pending_request_in_the_database(org_a, admin, clerk):
    request = ask(admin, org_a, clerk)
    duplicate = RoleChangeRequest(
        organisation=org_a, user=clerk, role=request.role, change=GRANT, reason="x"
    )
    duplicate.requested_by = admin
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_it_enforces_four_eyes_in_the_database(org_a, admin, clerk):
    request = ask(admin, org_a, clerk)
    with pytest.raises(IntegrityError), transaction.atomic():
        RoleChangeRequest.objects.filter(pk=request.pk).update(
            status=RoleChangeStatus.APPROVED, decided_by=admin, decided_at=timezone.now()
        )


def test_it_refuses_to_grant_a_role_already_held(org_a, admin, reviewer):
    with pytest.raises(RuleViolation) as refused:
        ask(admin, org_a, reviewer, role=Role.REVIEWER)
    assert refused.value.code == "already_held" and refused.value.field == "role"
    assert "already holds" in refused.value.text() and "reviewer" in refused.value.text()


def test_it_refuses_to_revoke_a_role_not_held(org_a, admin, clerk):
    with pytest.raises(RuleViolation) as refused:
        ask(admin, org_a, clerk, role=Role.AUDITOR, change=REVOKE)
    assert refused.value.code == "not_held" and refused.value.field == "role"


def test_it_requires_a_reason(org_a, admin, clerk):
    with pytest.raises(RuleViolation) as refused:
        ask(admin, org_a, clerk, reason="   ")
    assert refused.value.field == "reason" and refused.value.code == "required"


def test_it_reports_every_problem_at_once(org_a, admin, reviewer):
    with pytest.raises(RuleViolations) as refused:
        ask(admin, org_a, reviewer, role=Role.REVIEWER, reason="")
    assert {v.field for v in refused.value.violations} == {"reason", "role"}


def test_it_refuses_the_tax_officer_role(org_a, admin, clerk):
    with pytest.raises(RuleViolation) as refused:
        ask(admin, org_a, clerk, role=Role.TAX_OFFICER)
    assert refused.value.code == "role_not_grantable"


def test_it_rejects_with_a_reason(org_a, admin, second_admin, clerk):
    request = ask(admin, org_a, clerk)
    with pytest.raises(RuleViolation) as refused:
        do_reject_role_change(actor_for_user(second_admin), request, " ")
    assert refused.value.field == "decision_note" and refused.value.code == "required"

    rejected = do_reject_role_change(actor_for_user(second_admin), request, "Not their duty.")
    assert rejected.status == RoleChangeStatus.REJECTED
    assert rejected.decided_by == second_admin and rejected.decision_note == "Not their duty."
    assert not holds(clerk, org_a, Role.REVIEWER)
    assert audit_actions(org_a) == ["role_change.requested", "role_change.rejected"]


def test_it_keeps_a_decision_final(org_a, admin, second_admin, clerk):
    request = ask(admin, org_a, clerk)
    do_reject_role_change(actor_for_user(second_admin), request, "No.")
    with pytest.raises(RuleViolation) as refused:
        do_approve_role_change(actor_for_user(second_admin), request)
    assert refused.value.code == "already_decided"
    assert not holds(clerk, org_a, Role.REVIEWER)


def test_it_lets_the_requester_withdraw(org_a, admin, second_admin, clerk):
    request = ask(admin, org_a, clerk)
    with pytest.raises(RuleViolation) as refused:
        do_withdraw_role_change(actor_for_user(second_admin), request)
    assert refused.value.code == "not_requester"

    withdrawn = do_withdraw_role_change(actor_for_user(admin), request)
    assert withdrawn.status == RoleChangeStatus.WITHDRAWN
    assert withdrawn.decided_by is None and withdrawn.decided_at is not None
    assert audit_actions(org_a) == ["role_change.requested", "role_change.withdrawn"]
    with pytest.raises(RuleViolation):
        do_approve_role_change(actor_for_user(second_admin), withdrawn)
    ask(admin, org_a, clerk, reason="Asked again, properly.")  # no longer blocks a new request


def test_it_checks_the_change_again_when_approving(org_a, admin, second_admin, clerk):
    request = ask(admin, org_a, clerk)
    do_grant_role(OPERATOR, clerk, org_a, Role.REVIEWER)
    with pytest.raises(RuleViolation) as refused:
        do_approve_role_change(actor_for_user(second_admin), request)
    assert refused.value.code == "already_held"
    request.refresh_from_db()
    assert request.status == RoleChangeStatus.PENDING


def test_it_refuses_people_without_the_permission(org_a, admin, clerk, reviewer, admin_b):
    with pytest.raises(PermissionDenied):
        ask(clerk, org_a, reviewer, role=Role.CLERK)
    with pytest.raises(PermissionDenied):
        ask(admin_b, org_a, clerk)
    request = ask(admin, org_a, clerk)
    for outsider in (clerk, admin_b):
        with pytest.raises(PermissionDenied):
            do_approve_role_change(actor_for_user(outsider), request)
        with pytest.raises(PermissionDenied):
            do_reject_role_change(actor_for_user(outsider), request, "No.")
    with pytest.raises(PermissionDenied):
        do_approve_role_change(OPERATOR, request)  # a decision needs a person
    assert not holds(clerk, org_a, Role.REVIEWER)
