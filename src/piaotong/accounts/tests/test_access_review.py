"""The periodic access review (定期权限审查): who holds what, last logins, dormant access, and
revocation of dormant access through ordinary, approved requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.test import override_settings
from django.utils import timezone, translation

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.access_review import access_review_table, build_access_review, dormant_days
from piaotong.accounts.choices import Role, RoleChange, RoleChangeStatus
from piaotong.accounts.models import Membership, RoleChangeRequest, User
from piaotong.accounts.role_requests import (
    do_approve_role_change,
    do_export_access_review,
    do_request_dormant_revocations,
    do_request_role_change,
)
from piaotong.ledger.models import AuditEntry
from piaotong.testing import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(org_a):
    return make_user("admin", org_a, Role.ORG_ADMIN)


@pytest.fixture
def second_admin(org_a):
    return make_user("admin2", org_a, Role.ORG_ADMIN)


def last_seen(user: User, days_ago: int) -> None:
    User.objects.filter(pk=user.pk).update(last_login=timezone.now() - timedelta(days=days_ago))


def joined(user: User, days_ago: int) -> None:
    User.objects.filter(pk=user.pk).update(date_joined=timezone.now() - timedelta(days=days_ago))


def by_user(review) -> dict[tuple[str, str], bool]:
    return {(r.membership.user.username, r.membership.role): r.is_dormant for r in review.rows}


def test_it_lists_every_membership_with_its_last_login(org_a, admin, clerk, reviewer, outsider):
    last_seen(clerk, 3)
    review = build_access_review(org_a)
    assert [(r.membership.user.username, r.role) for r in review.rows] == [
        ("admin", Role.ORG_ADMIN),
        ("clerk", Role.CLERK),
        ("reviewer", Role.REVIEWER),
    ]
    clerk_row = review.rows[1]
    assert clerk_row.membership.user.last_login is not None
    assert timezone.now() - clerk_row.membership.user.last_login > timedelta(days=2)
    assert review.dormant_days == 90 and review.dormant == []


def test_it_flags_access_unused_for_ninety_days(org_a, admin, clerk, reviewer, auditor):
    last_seen(clerk, 91)
    last_seen(reviewer, 89)
    joined(auditor, 200)  # never logged in, account made long ago
    review = build_access_review(org_a)
    assert by_user(review) == {
        ("admin", "org_admin"): False,  # never logged in, but new
        ("auditor", "auditor"): True,
        ("clerk", "clerk"): True,
        ("reviewer", "reviewer"): False,
    }


@override_settings(PIAOTONG_DORMANT_DAYS=30)
def test_it_reads_the_dormancy_period_from_the_settings(org_a, clerk):
    last_seen(clerk, 31)
    assert dormant_days() == 30
    assert build_access_review(org_a).dormant[0].membership.user == clerk


@override_settings(PIAOTONG_DORMANT_DAYS="ninety")
def test_it_fails_loudly_on_a_bad_dormancy_period():
    with pytest.raises(ImproperlyConfigured):
        dormant_days()


def test_it_shows_the_pending_request_of_a_role(org_a, admin, clerk, reviewer):
    request = do_request_role_change(
        actor_for_user(admin), org_a, reviewer, Role.REVIEWER, RoleChange.REVOKE, "Moved on."
    )
    review = build_access_review(org_a)
    pending = {r.membership.user.username: r.pending for r in review.rows}
    assert pending == {"admin": None, "clerk": None, "reviewer": request}
    assert review.pending == [request]


def test_it_requests_revocation_of_every_dormant_role(org_a, admin, second_admin, clerk, reviewer):
    do_request_role_change(
        actor_for_user(admin), org_a, reviewer, Role.REVIEWER, RoleChange.REVOKE, "Moved on."
    )
    for user in (clerk, reviewer):
        last_seen(user, 120)

    created = do_request_dormant_revocations(actor_for_user(admin), org_a)

    # The reviewer's role already has a pending request: only the clerk's is new.
    assert [(r.user, r.role, r.change) for r in created] == [(clerk, Role.CLERK, RoleChange.REVOKE)]
    assert created[0].status == RoleChangeStatus.PENDING and "90" in created[0].reason
    assert Membership.objects.filter(user=clerk, organisation=org_a).exists()  # not yet
    entry = AuditEntry.objects.filter(action="role_change.requested").latest("seq")
    assert entry.details["dormant"] is True and entry.organisation_id == org_a.pk
    assert do_request_dormant_revocations(actor_for_user(admin), org_a) == []

    do_approve_role_change(actor_for_user(second_admin), created[0])
    assert not Membership.objects.filter(user=clerk, organisation=org_a).exists()


def test_it_leaves_dormant_revocations_to_admins(org_a, clerk, auditor):
    last_seen(clerk, 120)
    with pytest.raises(PermissionDenied):
        do_request_dormant_revocations(actor_for_user(auditor), org_a)
    assert not RoleChangeRequest.objects.exists()


def test_it_audits_an_export_of_the_review(org_a, auditor, clerk):
    review = do_export_access_review(actor_for_user(auditor), org_a)
    entry = AuditEntry.objects.get(action="access_review.exported")
    assert entry.actor == f"user:{auditor.pk}" and entry.organisation_id == org_a.pk
    assert entry.details == {"memberships": len(review.rows), "dormant": 0}


def test_it_refuses_the_export_to_a_clerk(org_a, clerk):
    with pytest.raises(PermissionDenied):
        do_export_access_review(actor_for_user(clerk), org_a)


def test_it_tabulates_the_review_for_a_spreadsheet(org_a, clerk):
    last_seen(clerk, 100)
    with translation.override("en"):
        header, rows = access_review_table(build_access_review(org_a))
    table = list(rows)  # consumed later, as a streaming response does, in whatever language
    assert len(header) == 8 and len(table) == 1
    username, _, role, granted, last_login, dormant, active, pending = table[0]
    assert username == "clerk" and role == "Issuing clerk (开票员)"
    assert granted.endswith("+08:00") and last_login.endswith("+08:00")
    assert (dormant, active, pending) == ("yes", "yes", "")
