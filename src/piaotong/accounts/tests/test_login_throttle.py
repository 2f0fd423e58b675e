"""Brute force: lockout per username and per IP address with a cool-off, refusals before the
password is checked, every attempt audited, and nothing that tells which usernames exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from piaotong.accounts import throttle
from piaotong.accounts.actions import LoginFailure, do_record_login
from piaotong.accounts.models import LoginThrottle, ThrottleScope
from piaotong.accounts.throttle import COOL_OFF, WINDOW, after_failure, is_locked
from piaotong.ledger.models import AuditEntry

PASSWORD = "correct-horse-battery"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def fail(username: str, ip: str, at: datetime) -> None:
    do_record_login(username, ip, succeeded=False, reason=LoginFailure.BAD_CREDENTIALS, now=at)


def log_in(client: Client, username: str, password: str, ip: str = "127.0.0.1"):
    return client.post(
        reverse("accounts:login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


# --- The arithmetic, without a database ----------------------------------------------


def test_it_locks_on_the_fifth_failure_within_the_window():
    state = None
    for minute in range(4):
        state = after_failure(state, T0 + timedelta(minutes=minute), 5)
        assert not is_locked(state, T0 + timedelta(minutes=minute))
    state = after_failure(state, T0 + timedelta(minutes=4), 5)
    assert is_locked(state, T0 + timedelta(minutes=4))
    assert state.locked_until == T0 + timedelta(minutes=4) + COOL_OFF


def test_it_forgets_failures_older_than_the_window():
    state = None
    for minute in (0, 1, 2, 3):
        state = after_failure(state, T0 + timedelta(minutes=minute), 5)
    state = after_failure(state, T0 + WINDOW, 5)
    assert not is_locked(state, T0 + WINDOW) and state.failures == 1


# --- Through the actions, with time passed in ----------------------------------------


@pytest.mark.django_db
def test_it_locks_a_username_for_the_cool_off_then_lets_it_try_again(clerk):
    for second in range(5):
        assert throttle.locked_until("clerk", "10.0.0.1", T0) is None
        fail("clerk", f"10.0.0.{second + 1}", T0 + timedelta(seconds=second))
    locked_at = T0 + timedelta(seconds=4)
    assert throttle.locked_until("CLERK ", "10.9.9.9", locked_at) == locked_at + COOL_OFF
    assert throttle.locked_until("clerk", "10.9.9.9", locked_at + COOL_OFF) is None
    # After the cool-off the count starts again: one more failure does not lock.
    fail("clerk", "10.0.0.1", locked_at + COOL_OFF)
    assert throttle.locked_until("clerk", "10.0.0.1", locked_at + COOL_OFF) is None


@pytest.mark.django_db
def test_it_locks_an_ip_address_after_twenty_failures_on_any_usernames():
    for n in range(19):
        fail(f"user{n}", "203.0.113.7", T0)
    assert throttle.locked_until("someone-else", "203.0.113.7", T0) is None
    fail("user19", "203.0.113.7", T0)
    assert throttle.locked_until("someone-else", "203.0.113.7", T0) == T0 + COOL_OFF
    assert throttle.locked_until("someone-else", "198.51.100.1", T0) is None
    assert throttle.locked_until("someone-else", "203.0.113.7", T0 + COOL_OFF) is None


@pytest.mark.django_db
def test_it_does_not_count_a_refusal_during_a_lock(clerk):
    for _ in range(5):
        fail("clerk", "10.0.0.1", T0)
    for _ in range(3):
        do_record_login("clerk", "10.0.0.1", succeeded=False, reason=LoginFailure.LOCKED, now=T0)
    row = LoginThrottle.objects.get(scope=ThrottleScope.USERNAME, key="clerk")
    assert row.failures == 0 and row.locked_until == T0 + COOL_OFF
    assert AuditEntry.objects.filter(action="login.failed").count() == 8


@pytest.mark.django_db
def test_it_clears_the_usernames_count_after_a_login_but_not_the_ips(clerk):
    for _ in range(4):
        fail("clerk", "10.0.0.1", T0)
    do_record_login("clerk", "10.0.0.1", succeeded=True, reason="password", user=clerk, now=T0)
    assert not LoginThrottle.objects.filter(scope=ThrottleScope.USERNAME).exists()
    assert LoginThrottle.objects.get(scope=ThrottleScope.IP).failures == 4


# --- Through the login page -------------------------------------------------------------


@pytest.fixture
def english(client: Client) -> None:
    client.cookies["django_language"] = "en"


@pytest.mark.django_db
def test_it_refuses_even_the_right_password_while_locked(client, english, clerk):
    for _ in range(5):
        assert log_in(client, "clerk", "wrong password").status_code == 200
    response = log_in(client, "clerk", PASSWORD)
    assert response.status_code == 200 and SESSION_KEY not in client.session
    assert "Too many failed attempts. Wait 15 minutes" in response.content.decode()
    last = AuditEntry.objects.order_by("seq").last()
    assert last.action == "login.failed" and last.details["reason"] == "locked"


@pytest.mark.django_db
def test_it_locks_an_ip_address_across_usernames(client, english, clerk):
    for n in range(20):
        log_in(client, f"guess{n}", "wrong password", ip="198.51.100.9")
    assert (
        "Too many failed attempts"
        in log_in(client, "clerk", PASSWORD, ip="198.51.100.9").content.decode()
    )
    assert log_in(Client(), "clerk", PASSWORD, ip="198.51.100.10").status_code == 302


@pytest.mark.django_db
def test_it_says_the_same_for_an_unknown_username_and_a_wrong_password(client, english, clerk):
    unknown = log_in(client, "nobody-here", "wrong password")
    wrong = log_in(client, "clerk", "wrong password")
    assert unknown.context["form"].non_field_errors() == wrong.context["form"].non_field_errors()
    for _ in range(4):
        log_in(client, "nobody-here", "wrong password")
        log_in(client, "clerk", "wrong password")
    # Both lock the same way: a lockout does not reveal that the username exists either.
    assert (
        log_in(client, "nobody-here", "x").context["form"].non_field_errors()
        == log_in(client, "clerk", "x").context["form"].non_field_errors()
    )


@pytest.mark.django_db
def test_it_audits_a_failed_login_with_username_and_ip_but_never_the_password(client, clerk):
    log_in(client, "clerk", "my secret guess", ip="192.0.2.44")
    entry = AuditEntry.objects.get(action="login.failed")
    assert entry.target == "user:clerk"
    assert entry.actor == "ip:192.0.2.44"
    assert entry.details == {"ip": "192.0.2.44", "reason": "bad_credentials"}
    assert "my secret guess" not in str(entry.details) + entry.actor_label + entry.target


@pytest.mark.django_db
def test_it_audits_a_successful_login(client, clerk):
    log_in(client, "clerk", PASSWORD, ip="192.0.2.45")
    entry = AuditEntry.objects.get(action="login.succeeded")
    assert entry.actor == f"user:{clerk.pk}" and entry.actor_label == "clerk"
    assert entry.details == {"ip": "192.0.2.45", "method": "password"}


@pytest.mark.django_db
def test_it_counts_wrong_codes_of_the_second_step_towards_the_lockout(client, english, reviewer):
    log_in(client, "reviewer", PASSWORD)
    for _ in range(5):
        client.post(reverse("accounts:login_verify"), {"code": "000000"})
    response = client.post(reverse("accounts:login_verify"), {"code": "000001"})
    assert "Too many failed attempts" in response.content.decode()


def test_it_reads_the_client_address_behind_trusted_proxies(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5")
    assert throttle.client_ip(request) == "10.0.0.2"
    settings.PIAOTONG_TRUSTED_PROXIES = 1
    assert throttle.client_ip(request) == "203.0.113.5"
