"""Security headers on every response: CSP, clickjacking, sniffing, referrer, HSTS behind TLS."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_it_sends_a_strict_content_security_policy(client: Client):
    response = client.get("/accounts/login/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_it_relaxes_only_styles_on_the_api_docs_page(client: Client):
    policy = client.get("/api/v1/docs").headers["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy and "script-src 'self';" in policy


def test_it_does_not_send_hsts_without_tls(client: Client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
