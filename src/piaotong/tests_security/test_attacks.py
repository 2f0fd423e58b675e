"""Attacks on the user center and issuing, through the real URLs (issue 4, "Bad input and
attacks"): session fixation, CSRF, stored XSS through user-supplied fields, SQL injection through
filters, privilege escalation through API parameters, and forged approval requests.

Each test states the attack, performs it as an attacker would, and checks both the answer and
that nothing changed in the database.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import Client
from django.urls import reverse

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import ApiScope, Role, RoleChange, RoleChangeStatus
from piaotong.accounts.models import Membership, Organisation, RoleChangeRequest, User
from piaotong.accounts.role_requests import do_request_role_change
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolations
from piaotong.testing import draft, line, make_user

pytestmark = pytest.mark.django_db

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"


def _logged_in(user: User, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    client.cookies["django_language"] = "en"
    return client


def _api(client: Client, path: str, body: Any) -> Any:
    return client.post(path, orjson.dumps(body), content_type="application/json")


# --- Session fixation ---------------------------------------------------------------------


def test_it_gives_a_new_session_key_at_login(clerk):
    """An attacker plants a session id before the victim logs in; it must not survive login."""
    client = Client()
    client.get(reverse("accounts:login"))
    session = client.session
    session["planted"] = "by-attacker"
    session.save()
    planted = session.session_key

    response = client.post(
        reverse("accounts:login"), {"username": clerk.username, "password": "correct-horse-battery"}
    )

    assert response.status_code == 302
    assert client.cookies["sessionid"].value != planted
    from django.contrib.sessions.models import Session

    assert not Session.objects.filter(session_key=planted).exists()


# --- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["role_request_approve", "role_request_reject", "invitation_approve", "registration_approve"],
)
def test_it_refuses_state_changes_without_the_csrf_token(name, org_a, clerk):
    admin = make_user("csrf-admin", org_a, Role.ORG_ADMIN)
    client = _logged_in(admin, csrf=True)
    before = (RoleChangeRequest.objects.count(), Membership.objects.count())
    response = client.post(reverse(f"accounts:{name}", args=[1]), {"note": "x"})
    assert response.status_code == 403
    assert (RoleChangeRequest.objects.count(), Membership.objects.count()) == before


def test_it_refuses_a_login_posted_from_another_site_without_the_token(clerk):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("accounts:login"), {"username": clerk.username, "password": "correct-horse-battery"}
    )
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


# --- Stored XSS through user-supplied fields ----------------------------------------------


def test_it_refuses_markup_in_invoice_fields_before_anything_is_stored(org_a, clerk):
    """Printed invoice fields end up in PDFs, XML and other systems: markup is refused at entry."""
    with pytest.raises(RuleViolations) as refused:
        do_issue_new_invoice(
            actor_for_user(clerk),
            org_a,
            draft(buyer_name=PAYLOAD, remarks=PAYLOAD, lines=[line(item_name="软件" + PAYLOAD)]),
        )
    assert {v.field for v in refused.value.violations} == {
        "buyer_name",
        "remarks",
        "lines.0.item_name",
    }
    assert not Invoice.objects.exists()


ATTRIBUTE_BREAKOUT = '" onmouseover="alert(1)" x=\''


def test_it_escapes_user_supplied_text_on_every_page_that_shows_it(org_a, clerk, auditor):
    """A full name with a script, and a buyer name breaking out of an attribute, render inert."""
    clerk.first_name = PAYLOAD
    clerk.save()
    invoice = do_issue_new_invoice(
        actor_for_user(clerk), org_a, draft(buyer_name="上海" + ATTRIBUTE_BREAKOUT)
    )
    record_audit(actor_for_user(clerk), "test.note", PAYLOAD[:100], org_a.pk, {"x": PAYLOAD})
    pages = [
        (clerk, reverse("invoices:dashboard")),
        (clerk, reverse("invoices:list")),
        (clerk, reverse("invoices:detail", args=[invoice.uid])),
        (auditor, reverse("ledger:audit_log")),
    ]
    for user, url in pages:
        html = _logged_in(user).get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html, url
        assert 'onmouseover="alert(1)"' not in html, url
    detail = _logged_in(clerk).get(reverse("invoices:detail", args=[invoice.uid])).text
    assert ESCAPED in detail and "&quot; onmouseover=&quot;alert(1)&quot;" in detail


def test_it_escapes_an_organisation_name_and_a_rejection_reason(org_a, tax_officer, media_root):
    from piaotong.accounts.registration import DocumentUpload, do_apply_for_registration
    from piaotong.accounts.tests.test_registration import PDF, application

    pending = do_apply_for_registration(
        application("MA01XQ11", name="北京" + PAYLOAD[:60]), [DocumentUpload("a.pdf", PDF)]
    )
    client = _logged_in(tax_officer)
    html = client.get(reverse("accounts:registration_detail", args=[pending.pk])).text
    assert "<script>alert" not in html and "&lt;script&gt;" in html


# --- SQL injection through filters --------------------------------------------------------

INJECTIONS = [
    "' OR '1'='1",
    "%' OR 1=1 --",
    "'); DROP TABLE invoices_invoice; --",
    '" OR ""="',
    "\\' UNION SELECT password FROM accounts_user --",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_it_treats_filter_text_as_data(text, org_a, org_b, clerk, outsider):
    do_issue_new_invoice(actor_for_user(clerk), org_a, draft())
    client = _logged_in(outsider)
    page = client.get(reverse("invoices:list"), {"buyer": text, "number": text[:20]})
    api = client.get("/api/v1/invoices", {"buyer": text})
    assert page.status_code == 200
    assert api.status_code in {200, 422}
    if api.status_code == 200:
        assert api.json()["count"] == 0
    assert Invoice.objects.count() == 1  # the table is still there, with its row


@pytest.mark.parametrize("text", INJECTIONS)
def test_it_treats_audit_filter_text_as_data(text, auditor):
    response = _logged_in(auditor).get(
        reverse("ledger:audit_log"), {"actor": text, "action": text, "target": text}
    )
    assert response.status_code == 200
    assert User.objects.filter(pk=auditor.pk).exists()


# --- Privilege escalation through API parameters ------------------------------------------


def test_it_ignores_fields_the_api_does_not_accept(org_a, clerk):
    """A clerk sends status, number, reviewer and signature fields with an issue request."""
    body = {
        "kind": "digital_special",
        "buyer_name": "上海买方",
        "buyer_tax_id": draft().buyer_tax_id,
        "seller_tax_id": org_a.tax_id,
        "lines": [
            {"tax_code": line().tax_code, "item_name": "维护", "tax_rate": "0.06", "amount": "100"}
        ],
        "status": "fully_red_flushed",
        "number": "26112000000000000001",
        "reviewed_by": 1,
        "signature": "forged",
        "authority_flag": "",
        "red_of": 1,
    }
    response = _api(_logged_in(clerk), "/api/v1/invoices/drafts", body)
    assert response.status_code in {200, 201, 422}
    for invoice in Invoice.objects.all():
        assert invoice.status == "draft" and invoice.number is None
        assert invoice.signature == "" and invoice.red_of_id is None


def test_it_refuses_issuing_for_another_organisation_named_in_the_body(org_a, org_b, outsider):
    body = {
        "kind": "digital_special",
        "buyer_name": "上海买方",
        "buyer_tax_id": draft().buyer_tax_id,
        "seller_tax_id": org_a.tax_id,
        "lines": [
            {"tax_code": line().tax_code, "item_name": "维护", "tax_rate": "0.06", "amount": "100"}
        ],
    }
    response = _api(_logged_in(outsider), "/api/v1/invoices", body)
    assert response.status_code == 404
    assert not Invoice.objects.exists()


def test_it_refuses_an_api_key_of_one_organisation_acting_for_another(org_a, org_b, outsider):
    from piaotong.accounts.actions import do_create_api_key

    b_admin = actor_for_user(make_user("b-admin", org_b, Role.ORG_ADMIN))
    _key, secret = do_create_api_key(b_admin, org_b, "erp", list(ApiScope))
    client = Client(HTTP_X_API_KEY=secret)
    body = {
        "kind": "digital_special",
        "buyer_name": "上海买方",
        "buyer_tax_id": draft().buyer_tax_id,
        "seller_tax_id": org_a.tax_id,
        "lines": [
            {"tax_code": line().tax_code, "item_name": "维护", "tax_rate": "0.06", "amount": "100"}
        ],
    }
    assert _api(client, "/api/v1/invoices", body).status_code == 404
    assert not Invoice.objects.exists()


# --- Forged approval requests -------------------------------------------------------------


@pytest.fixture
def pending_request(org_a: Organisation, clerk: User) -> RoleChangeRequest:
    maker = make_user("maker", org_a, Role.ORG_ADMIN)
    return do_request_role_change(
        actor_for_user(maker), org_a, clerk, Role.FINANCE_MANAGER, RoleChange.GRANT, "月结需要"
    )


def test_it_answers_404_to_an_admin_of_another_organisation_approving(pending_request, org_b):
    foreign_admin = make_user("foreign-admin", org_b, Role.ORG_ADMIN)
    url = reverse("accounts:role_request_approve", args=[pending_request.pk])
    assert _logged_in(foreign_admin).post(url).status_code == 404
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.PENDING


def test_it_refuses_the_maker_approving_their_own_request(pending_request):
    url = reverse("accounts:role_request_approve", args=[pending_request.pk])
    _logged_in(pending_request.requested_by).post(url)
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.PENDING
    assert not Membership.objects.filter(role=Role.FINANCE_MANAGER).exists()


def test_it_refuses_the_beneficiary_approving_a_grant_to_themself(pending_request, org_a, clerk):
    """The clerk who would receive the role, even made an admin meanwhile, cannot decide it."""
    Membership.objects.create(user=clerk, organisation=org_a, role=Role.ORG_ADMIN)
    url = reverse("accounts:role_request_approve", args=[pending_request.pk])
    _logged_in(clerk).post(url)
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.PENDING


def test_it_ignores_a_forged_decider_in_the_form(pending_request, org_a):
    checker = make_user("checker", org_a, Role.ORG_ADMIN)
    url = reverse("accounts:role_request_approve", args=[pending_request.pk])
    _logged_in(checker).post(url, {"decided_by": pending_request.requested_by_id, "note": "ok"})
    pending_request.refresh_from_db()
    assert pending_request.status == RoleChangeStatus.APPROVED
    assert pending_request.decided_by_id == checker.pk
