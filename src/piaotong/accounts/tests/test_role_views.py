"""The permission change pages and the access review, through URLs, as A's two admins, A's
clerk and auditor, and B's admin, who must never learn what A's requests are (404)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.actions import do_grant_role
from piaotong.accounts.choices import Role, RoleChange, RoleChangeStatus
from piaotong.accounts.models import Membership, RoleChangeRequest, User
from piaotong.accounts.role_requests import do_request_role_change
from piaotong.ledger.models import AuditEntry
from piaotong.testing import OPERATOR, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english(client: Client) -> None:
    """Messages are asserted in English (the language cookie)."""
    client.cookies["django_language"] = "en"


@pytest.fixture
def admin(org_a):
    return make_user("admin", org_a, Role.ORG_ADMIN)


@pytest.fixture
def second_admin(org_a):
    return make_user("admin2", org_a, Role.ORG_ADMIN)


@pytest.fixture
def admin_b(org_b):
    return make_user("admin_b", org_b, Role.ORG_ADMIN)


@pytest.fixture
def pending_request(org_a, admin, clerk) -> RoleChangeRequest:
    return do_request_role_change(
        actor_for_user(admin), org_a, clerk, Role.REVIEWER, RoleChange.GRANT, "Covers reviews."
    )


def url(name: str, *args: int) -> str:
    return reverse(f"accounts:{name}", args=args)


def as_user(user: User) -> Client:
    client = Client()
    client.cookies["django_language"] = "en"
    client.force_login(user)
    return client


def page_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_it_shows_the_navigation_link_to_admins_and_auditors_only(admin, auditor, clerk):
    roles = url("roles")
    for user in (admin, auditor):
        assert f'href="{roles}"' in as_user(user).get(reverse("invoices:dashboard")).text
    assert f'href="{roles}"' not in as_user(clerk).get(reverse("invoices:dashboard")).text


def test_it_takes_an_admin_of_one_organisation_straight_to_its_requests(org_a, admin):
    response = as_user(admin).get(url("roles"))
    assert response.status_code == 302 and response.url == url("role_requests", org_a.pk)


def test_it_takes_an_auditor_straight_to_the_review(org_a, auditor):
    response = as_user(auditor).get(url("roles"))
    assert response.url == url("access_review", org_a.pk)


def test_it_lets_an_admin_of_two_organisations_choose(org_a, org_b, admin):
    do_grant_role(OPERATOR, admin, org_b, Role.ORG_ADMIN)
    html = as_user(admin).get(url("roles")).text
    assert url("role_requests", org_a.pk) in html and url("role_requests", org_b.pk) in html


def test_it_sends_anonymous_visitors_to_the_login_page(client, org_a):
    response = client.get(url("role_requests", org_a.pk))
    assert response.status_code == 302 and reverse("accounts:login") in response.url


def test_it_requests_and_approves_a_change_through_the_pages(org_a, admin, second_admin, clerk):
    form = as_user(admin).get(url("role_request_new", org_a.pk))
    assert form.status_code == 200 and 'name="reason"' in form.text

    response = as_user(admin).post(
        url("role_request_new", org_a.pk),
        {"user": clerk.pk, "role": "reviewer", "change": "grant", "reason": "Covers reviews."},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == url("role_requests", org_a.pk)
    assert "Request sent: another admin must approve it." in page_messages(response)
    request = RoleChangeRequest.objects.get()
    assert (request.user, request.role, request.requested_by) == (clerk, "reviewer", admin)
    assert url("role_request_withdraw", request.pk) in response.text
    assert url("role_request_approve", request.pk) not in response.text  # not one's own

    checker = as_user(second_admin)
    assert (
        url("role_request_approve", request.pk) in checker.get(url("role_requests", org_a.pk)).text
    )
    response = checker.post(url("role_request_approve", request.pk), follow=True)
    assert "Approved: the change is in effect." in page_messages(response)
    assert Membership.objects.filter(user=clerk, organisation=org_a, role="reviewer").exists()


def test_it_shows_a_refusal_next_to_the_field(org_a, admin, reviewer):
    response = as_user(admin).post(
        url("role_request_new", org_a.pk),
        {"user": reviewer.pk, "role": "reviewer", "change": "grant", "reason": "Again."},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["role"] == [
        "reviewer already holds the role Reviewer (复核员); there is nothing to grant."
    ]
    assert not RoleChangeRequest.objects.exists()


def test_it_offers_only_members_of_the_organisation(org_a, admin, clerk, outsider):
    client = as_user(admin)
    choices = client.get(url("role_request_new", org_a.pk)).context["form"].fields["user"]
    assert set(choices.queryset) == {admin, clerk}
    response = client.post(
        url("role_request_new", org_a.pk),
        {"user": outsider.pk, "role": "clerk", "change": "grant", "reason": "Hire."},
    )
    assert "user" in response.context["form"].errors
    assert not RoleChangeRequest.objects.exists()


def test_it_refuses_self_approval_through_the_page(admin, pending_request):
    response = as_user(admin).post(url("role_request_approve", pending_request.pk), follow=True)
    assert any("Nobody decides their own request" in m for m in page_messages(response))
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.PENDING


def test_it_rejects_only_with_a_reason(org_a, second_admin, clerk, pending_request):
    client = as_user(second_admin)
    response = client.post(
        url("role_request_reject", pending_request.pk), {"note": ""}, follow=True
    )
    assert any("Say why the request is rejected" in m for m in page_messages(response))
    response = client.post(
        url("role_request_reject", pending_request.pk), {"note": "Not their duty."}, follow=True
    )
    assert "Rejected: nothing changes." in page_messages(response)
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.REJECTED
    history = client.get(url("role_history", org_a.pk)).text
    assert "Not their duty." in history and "Covers reviews." in history


def test_it_lets_the_requester_withdraw(admin, pending_request):
    response = as_user(admin).post(url("role_request_withdraw", pending_request.pk), follow=True)
    assert "Request withdrawn." in page_messages(response)
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.WITHDRAWN


def test_it_answers_404_to_an_admin_of_another_organisation(org_a, admin_b, pending_request):
    client = as_user(admin_b)
    for name in ("role_requests", "role_request_new", "role_history", "access_review"):
        assert client.get(url(name, org_a.pk)).status_code == 404, name
    assert client.get(url("access_review_csv", org_a.pk)).status_code == 404
    assert client.post(url("revoke_dormant", org_a.pk)).status_code == 404
    for name in ("role_request_approve", "role_request_reject", "role_request_withdraw"):
        response = client.post(url(name, pending_request.pk), {"note": "forged"})
        assert response.status_code == 404, name
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.PENDING


def test_it_keeps_a_clerk_out(org_a, clerk, pending_request):
    client = as_user(clerk)
    assert client.get(url("roles")).status_code == 403
    for name in ("role_requests", "role_request_new", "role_history", "access_review"):
        assert client.get(url(name, org_a.pk)).status_code == 404, name
    assert client.post(url("role_request_approve", pending_request.pk)).status_code == 404
    assert not Membership.objects.filter(user=clerk, role="reviewer").exists()


def test_it_lets_an_auditor_review_but_not_decide(org_a, auditor, pending_request):
    client = as_user(auditor)
    review = client.get(url("access_review", org_a.pk))
    assert review.status_code == 200 and url("revoke_dormant", org_a.pk) not in review.text
    assert client.get(url("role_history", org_a.pk)).status_code == 200
    assert client.get(url("role_requests", org_a.pk)).status_code == 404
    assert client.post(url("role_request_approve", pending_request.pk)).status_code == 404
    assert client.post(url("revoke_dormant", org_a.pk)).status_code == 404


def test_it_exports_a_formula_safe_csv(org_a, auditor, clerk):
    User.objects.filter(pk=clerk.pk).update(first_name='=HYPERLINK("http://evil.example")')
    response = as_user(auditor).get(url("access_review_csv", org_a.pk))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert f"access-review-{org_a.tax_id}-" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("\ufeffUsername,Name,Role")
    assert '\'=HYPERLINK(""http://evil.example"")' in text
    assert ",=HYPERLINK" not in text and '"=HYPERLINK' not in text
    assert AuditEntry.objects.filter(action="access_review.exported", actor=f"user:{auditor.pk}")


def test_it_requests_revocation_of_dormant_access_from_the_review(org_a, admin, clerk):
    User.objects.filter(pk=clerk.pk).update(last_login=timezone.now() - timedelta(days=100))
    client = as_user(admin)
    review = client.get(url("access_review", org_a.pk))
    assert "dormant" in review.text and url("revoke_dormant", org_a.pk) in review.text
    response = client.post(url("revoke_dormant", org_a.pk), follow=True)
    assert "1 revocation requested; another admin must approve it." in page_messages(response)
    request = RoleChangeRequest.objects.get()
    assert (request.user, request.change, request.status) == (clerk, "revoke", "pending")
    response = client.post(url("revoke_dormant", org_a.pk), follow=True)
    assert "No dormant access without a pending request was found." in page_messages(response)


def test_it_builds_the_review_page_in_constant_queries(org_a, admin, django_assert_max_num_queries):
    client = as_user(admin)
    client.get(url("access_review", org_a.pk))  # warm the session

    def review_queries() -> int:
        with django_assert_max_num_queries(8) as captured:
            client.get(url("access_review", org_a.pk))
        return len(captured)

    few = review_queries()
    for number in range(10):
        member = make_user(f"member{number}", org_a, Role.CLERK)
        do_request_role_change(
            actor_for_user(admin), org_a, member, Role.AUDITOR, RoleChange.GRANT, "Audit help."
        )
    assert review_queries() == few


def test_it_escapes_what_requesters_type(org_a, admin, second_admin, clerk):
    do_request_role_change(
        actor_for_user(admin), org_a, clerk, Role.AUDITOR, RoleChange.GRANT, "<script>x()</script>"
    )
    html = as_user(second_admin).get(url("role_requests", org_a.pk)).text
    assert "<script>x()" not in html and "&lt;script&gt;x()" in html
