"""Session lifetime: logged out after 30 minutes without a request, and 12 hours after login."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from piaotong.accounts import session_state

pytestmark = pytest.mark.django_db
DASHBOARD = reverse("invoices:dashboard")


@pytest.fixture
def logged_in(client: Client, clerk) -> Client:
    client.cookies["django_language"] = "en"
    client.force_login(clerk)
    return client


def shift(client: Client, key: str, seconds: float) -> None:
    session = client.session
    session[key] -= seconds
    session.save()


def test_it_logs_out_after_thirty_minutes_without_activity(logged_in):
    shift(logged_in, session_state.SEEN_AT, 30 * 60 + 1)
    response = logged_in.get(DASHBOARD, follow=True)
    assert response.redirect_chain[0][0].startswith(reverse("accounts:login"))
    assert SESSION_KEY not in logged_in.session
    assert "after 30 minutes without activity" in response.content.decode()


def test_it_keeps_an_active_session_and_records_the_activity(logged_in):
    shift(logged_in, session_state.SEEN_AT, 29 * 60)
    before = logged_in.session[session_state.SEEN_AT]
    assert logged_in.get(DASHBOARD).status_code == 200
    assert logged_in.session[session_state.SEEN_AT] > before + 28 * 60


def test_it_logs_out_twelve_hours_after_login_however_active(logged_in):
    shift(logged_in, session_state.LOGIN_AT, 12 * 3600 + 1)
    response = logged_in.get(DASHBOARD, follow=True)
    assert response.redirect_chain[0][0].startswith(reverse("accounts:login"))
    assert SESSION_KEY not in logged_in.session
    assert "12 hours after logging in" in response.content.decode()


def test_it_stops_a_timed_out_session_from_calling_the_api(logged_in):
    assert logged_in.get("/api/v1/invoices").status_code == 200
    shift(logged_in, session_state.SEEN_AT, 31 * 60)
    assert logged_in.get("/api/v1/invoices").status_code == 401


def test_it_does_not_write_the_session_on_every_request(logged_in):
    logged_in.get(DASHBOARD)
    stamp = logged_in.session[session_state.SEEN_AT]
    time.sleep(0.01)
    logged_in.get(DASHBOARD)
    assert logged_in.session[session_state.SEEN_AT] == stamp


def test_it_marks_cookies_secure_behind_tls():
    code = (
        "from django.conf import settings; import django; django.setup(); "
        "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, "
        "settings.SESSION_COOKIE_AGE)"
    )
    env = os.environ | {"PIAOTONG_HTTPS": "1", "DJANGO_SETTINGS_MODULE": "piaotong.settings"}
    result = subprocess.run(  # noqa: S603 - our own interpreter with a fixed program
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True", str(12 * 3600)]
