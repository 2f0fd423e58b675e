"""Two-factor login through URLs: set-up, the code step, recovery codes, replay, turning it off,
and the rule that reviewers (and the other roles that approve or undo) cannot work without it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from piaotong.accounts import session_state
from piaotong.accounts.access import Actor
from piaotong.accounts.actions import (
    do_begin_totp_setup,
    do_confirm_totp,
    do_create_api_key,
    do_disable_totp,
    do_grant_role,
    do_regenerate_recovery_codes,
)
from piaotong.accounts.choices import ApiScope, Role
from piaotong.accounts.models import RecoveryCode, TotpDevice, User
from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation
from piaotong.testing import OPERATOR, enable_totp, make_user, totp_code

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"
DASHBOARD = reverse("invoices:dashboard")
SETUP = reverse("accounts:totp_setup")
VERIFY = reverse("accounts:login_verify")


@pytest.fixture(autouse=True)
def english(client: Client) -> None:
    client.cookies["django_language"] = "en"


def log_in(client: Client, username: str, password: str = PASSWORD, next_url: str = ""):
    data = {"username": username, "password": password} | ({"next": next_url} if next_url else {})
    return client.post(reverse("accounts:login"), data)


def enter_code(client: Client, code: str):
    return client.post(VERIFY, {"code": code})


def is_logged_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def audit_actions() -> list[str]:
    return list(AuditEntry.objects.order_by("seq").values_list("action", flat=True))


# --- Logging in with a second factor ------------------------------------------------


def test_it_asks_a_user_with_an_authenticator_for_a_code_before_logging_in(client, reviewer):
    response = log_in(client, "reviewer")
    assert response.status_code == 302 and response.url == VERIFY
    assert not is_logged_in(client)
    # Pending is not logged in: no page, and no API call, treats the visitor as the reviewer.
    assert client.get(DASHBOARD).status_code == 302
    assert client.get("/api/v1/invoices").status_code == 401


def test_it_logs_in_with_the_current_code(client, reviewer):
    target = reverse("invoices:review")
    log_in(client, "reviewer", next_url=target)
    response = enter_code(client, totp_code(reviewer.totp_device))
    assert response.status_code == 302 and response.url == target
    assert is_logged_in(client) and session_state.has_second_factor(client.session)
    assert client.get(target).status_code == 200
    entry = AuditEntry.objects.filter(action="login.succeeded").get()
    assert entry.details["method"] == "totp" and entry.actor == f"user:{reviewer.pk}"


def test_it_refuses_a_wrong_code_and_audits_it(client, reviewer):
    log_in(client, "reviewer")
    yesterday = timezone.now() - timedelta(days=1)
    response = enter_code(client, totp_code(reviewer.totp_device, yesterday))
    assert response.status_code == 200
    assert "That code is not valid" in response.content.decode()
    assert not is_logged_in(client)
    failure = AuditEntry.objects.filter(action="login.failed").get()
    assert failure.details == {"ip": "127.0.0.1", "reason": "bad_second_factor"}


def test_it_refuses_a_replayed_code(client, reviewer):
    code = totp_code(reviewer.totp_device)
    log_in(client, "reviewer")
    enter_code(client, code)
    assert is_logged_in(client)
    thief = Client()
    thief.cookies["django_language"] = "en"
    log_in(thief, "reviewer")
    response = enter_code(thief, code)
    assert response.status_code == 200 and not is_logged_in(thief)
    assert "That code is not valid" in response.content.decode()


def test_it_logs_in_with_a_recovery_code_once(client, clerk):
    codes = do_confirm_totp_for(clerk)
    log_in(client, "clerk")
    response = enter_code(client, codes[3].lower().replace("-", " "))
    assert response.status_code == 302 and is_logged_in(client)
    assert "9 remain" in client.get(DASHBOARD).content.decode()
    assert AuditEntry.objects.get(action="login.succeeded").details["method"] == "recovery_code"
    again = Client()
    log_in(again, "clerk")
    assert enter_code(again, codes[3]).status_code == 200 and not is_logged_in(again)


def test_it_sends_a_pending_visitor_back_to_the_password_after_five_minutes(client, reviewer):
    log_in(client, "reviewer")
    session = client.session
    session[session_state.PENDING]["at"] -= 301
    session.save()
    response = enter_code(client, totp_code(reviewer.totp_device))
    assert response.url == reverse("accounts:login") and not is_logged_in(client)


def test_it_gives_the_session_a_new_key_at_each_step(client, reviewer):
    client.get(reverse("accounts:login"))
    client.cookies["sessionid"] = "planted-by-an-attacker"
    log_in(client, "reviewer")
    pending_key = client.cookies["sessionid"].value
    assert pending_key != "planted-by-an-attacker"
    enter_code(client, totp_code(reviewer.totp_device))
    assert client.cookies["sessionid"].value not in {pending_key, "planted-by-an-attacker"}


# --- Mandatory two-factor login ------------------------------------------------------


@pytest.fixture
def new_reviewer(org_a) -> User:
    return make_user("new-reviewer", org_a, Role.REVIEWER, with_2fa=False)


def test_it_sends_a_reviewer_without_an_authenticator_to_the_setup(client, new_reviewer):
    response = log_in(client, "new-reviewer")
    assert response.url == SETUP
    assert AuditEntry.objects.get(action="login.succeeded").details["method"] == "password"
    for page in (DASHBOARD, reverse("invoices:review"), reverse("accounts:profile")):
        response = client.get(page)
        assert response.status_code == 302 and response.url == SETUP
    assert client.get(SETUP).status_code == 200


def test_it_does_not_let_the_session_of_a_reviewer_without_2fa_call_the_api(
    client, org_a, new_reviewer
):
    log_in(client, "new-reviewer")
    assert client.get("/api/v1/invoices").status_code == 401
    _key, token = do_create_api_key(OPERATOR, org_a, "ERP", [ApiScope.INVOICES_READ])
    with_key = client.get("/api/v1/invoices", headers={"X-API-Key": token})
    assert with_key.status_code == 200


def test_it_frees_the_reviewer_once_the_authenticator_is_confirmed(client, new_reviewer):
    log_in(client, "new-reviewer")
    page = client.get(SETUP).content.decode()
    device = TotpDevice.objects.get(user=new_reviewer)
    assert "otpauth://totp/" in page and "<svg" in page
    assert session_state.has_second_factor(client.session) is False
    wrong = client.post(SETUP, {"code": "12345"})
    assert "That code is not valid" in wrong.content.decode()
    response = client.post(SETUP, {"code": totp_code(device)})
    codes = response.context["codes"]
    assert len(codes) == 10 and codes[0] in response.content.decode()
    assert RecoveryCode.objects.filter(user=new_reviewer).count() == 10
    assert session_state.has_second_factor(client.session)
    assert client.get(DASHBOARD).status_code == 200
    assert audit_actions()[-2:] == ["totp.setup_started", "totp.enabled"]


def test_it_keeps_the_secret_while_the_setup_page_is_reloaded(client, new_reviewer):
    log_in(client, "new-reviewer")
    first = client.get(SETUP).context["secret"]
    assert client.get(SETUP).context["secret"] == first


def test_it_sends_a_user_who_gains_a_mandatory_role_to_the_setup(client, org_a, clerk):
    client.force_login(clerk)
    assert client.get(DASHBOARD).status_code == 200
    do_grant_role(OPERATOR, clerk, org_a, Role.REVIEWER)
    assert client.get(DASHBOARD).url == SETUP


def test_it_requires_two_factor_login_for_staff(client):
    User.objects.create_user("root", password=PASSWORD, is_staff=True, is_superuser=True)
    assert log_in(client, "root").url == SETUP
    assert client.get("/admin/").url == SETUP


def test_it_sends_the_admin_login_to_the_two_step_login(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response.url == f"{reverse('accounts:login')}?next=/admin/"


def test_it_lets_a_clerk_log_in_with_the_password_alone(client, clerk):
    response = log_in(client, "clerk")
    assert response.url == DASHBOARD
    assert client.get(DASHBOARD).status_code == 200


def test_it_logs_out_a_session_that_never_proved_the_users_authenticator(client, reviewer):
    client.force_login(reviewer)
    session = client.session
    session[session_state.SECOND_FACTOR] = False
    session.save()
    assert client.get(DASHBOARD).status_code == 302
    assert not is_logged_in(client)


def test_it_logs_out_a_session_made_outside_the_login_flow(client, clerk):
    client.force_login(clerk)
    session = client.session
    del session[session_state.LOGIN_AT]
    session.save()
    assert client.get(DASHBOARD).status_code == 302
    assert not is_logged_in(client)


# --- Recovery codes and turning it off ------------------------------------------------


def do_confirm_totp_for(user: User) -> list[str]:
    actor = Actor(user=user)
    device = do_begin_totp_setup(actor, user)
    earlier = timezone.now() - timedelta(seconds=90)
    return do_confirm_totp(actor, user, totp_code(device, earlier), earlier)


def test_it_does_not_confirm_an_authenticator_without_a_valid_code(clerk):
    actor = Actor(user=clerk)
    device = do_begin_totp_setup(actor, clerk)
    yesterday = timezone.now() - timedelta(days=1)
    with pytest.raises(RuleViolation) as refused:
        do_confirm_totp(actor, clerk, totp_code(device, yesterday))
    assert refused.value.code == "totp_invalid"
    assert not TotpDevice.objects.get(user=clerk).is_confirmed


def test_it_regenerates_recovery_codes_only_with_a_current_code(client, reviewer):
    old = set(RecoveryCode.objects.filter(user=reviewer).values_list("code_hash", flat=True))
    yesterday = timezone.now() - timedelta(days=1)
    with pytest.raises(RuleViolation):
        do_regenerate_recovery_codes(
            Actor(user=reviewer), reviewer, totp_code(reviewer.totp_device, yesterday)
        )
    client.force_login(reviewer)
    page = client.get(reverse("accounts:recovery_codes")).content.decode()
    assert "You have 10 unused recovery codes" in page
    response = client.post(
        reverse("accounts:recovery_codes"), {"code": totp_code(reviewer.totp_device)}
    )
    assert len(response.context["codes"]) == 10
    new = set(RecoveryCode.objects.filter(user=reviewer).values_list("code_hash", flat=True))
    assert len(new) == 10 and not new & old
    assert audit_actions()[-1] == "totp.recovery_codes_regenerated"


def test_it_turns_two_factor_login_off_only_with_a_code(client, clerk):
    enable_totp(clerk)
    client.force_login(clerk)
    url = reverse("accounts:totp_disable")
    yesterday = timezone.now() - timedelta(days=1)
    refused = client.post(url, {"code": totp_code(TotpDevice.objects.get(user=clerk), yesterday)})
    assert "That code is not valid" in refused.content.decode()
    assert TotpDevice.objects.filter(user=clerk).exists()
    response = client.post(url, {"code": totp_code(TotpDevice.objects.get(user=clerk))})
    assert response.url == reverse("accounts:profile")
    assert not TotpDevice.objects.filter(user=clerk).exists()
    assert not RecoveryCode.objects.filter(user=clerk).exists()
    assert audit_actions()[-1] == "totp.disabled"
    assert log_in(Client(), "clerk").url == DASHBOARD


def test_it_sends_a_reviewer_who_turned_it_off_to_set_up_a_new_one(client, reviewer):
    client.force_login(reviewer)
    do_disable_totp(Actor(user=reviewer), reviewer, totp_code(reviewer.totp_device))
    assert client.get(DASHBOARD).url == SETUP


def test_it_keeps_the_audit_chain_intact_through_logins(client, reviewer):
    log_in(client, "reviewer", password="wrong")
    log_in(client, "reviewer")
    enter_code(client, totp_code(reviewer.totp_device))
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
    assert audit_actions()[-2:] == ["login.failed", "login.succeeded"]
