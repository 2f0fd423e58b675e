"""Personal settings (个人设置): name, phone, email, language, and the two-factor status."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from piaotong.ledger.models import AuditEntry
from piaotong.testing import enable_totp

pytestmark = pytest.mark.django_db
PROFILE = reverse("accounts:profile")


@pytest.fixture
def as_clerk(client: Client, clerk) -> Client:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    client.force_login(clerk)
    return client


def test_it_links_the_profile_from_every_page(as_clerk):
    assert f'href="{PROFILE}"' in as_clerk.get(reverse("invoices:dashboard")).content.decode()


def test_it_shows_the_current_settings(as_clerk, clerk):
    form = as_clerk.get(PROFILE).context["form"]
    assert form.initial == {"full_name": "clerk", "phone": "", "email": "", "language": "zh-hans"}


def test_it_saves_the_settings_and_audits_which_changed(as_clerk, clerk):
    response = as_clerk.post(
        PROFILE,
        {
            "full_name": "张开票",
            "phone": "13800000000",
            "email": "kp@example.com",
            "language": "en",
        },
    )
    assert response.status_code == 302 and response.url == PROFILE
    clerk.refresh_from_db()
    assert (clerk.first_name, clerk.phone, clerk.email, clerk.language) == (
        "张开票",
        "13800000000",
        "kp@example.com",
        "en",
    )
    entry = AuditEntry.objects.get(action="user.profile_updated")
    assert entry.details == {"fields": ["first_name", "phone", "email", "language"]}
    assert "13800000000" not in str(entry.details)


def test_it_switches_the_interface_to_the_chosen_language(client, clerk):
    client.force_login(clerk)
    response = client.post(
        PROFILE, {"full_name": "clerk", "phone": "", "email": "", "language": "en"}
    )
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    page = client.get(PROFILE)
    assert (
        'lang="en"' in page.content.decode() and "Your profile is saved." in page.content.decode()
    )


def test_it_uses_the_profile_language_at_the_next_login(clerk):
    clerk.language = "en"
    clerk.save()
    client = Client()
    response = client.post(
        reverse("accounts:login"), {"username": "clerk", "password": "correct-horse-battery"}
    )
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"


def test_it_refuses_a_malformed_email_beside_the_field(as_clerk, clerk):
    response = as_clerk.post(
        PROFILE, {"full_name": "x", "phone": "", "email": "not-an-email", "language": "en"}
    )
    assert response.status_code == 200
    assert response.context["form"].errors["email"] == ["Enter a valid email address."]
    clerk.refresh_from_db()
    assert clerk.first_name == "clerk"


def test_it_offers_to_set_up_two_factor_login_when_it_is_off(as_clerk):
    html = as_clerk.get(PROFILE).content.decode()
    assert reverse("accounts:totp_setup") in html
    assert reverse("accounts:totp_disable") not in html


def test_it_offers_new_recovery_codes_and_turning_off_when_it_is_on(client, clerk):
    enable_totp(clerk)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    client.force_login(clerk)
    html = client.get(PROFILE).content.decode()
    assert reverse("accounts:recovery_codes") in html
    assert reverse("accounts:totp_disable") in html
    assert "10 unused recovery codes" in html


def test_it_escapes_what_the_user_typed(as_clerk):
    as_clerk.post(
        PROFILE,
        {"full_name": "<script>alert(1)</script>", "phone": "", "email": "", "language": "en"},
    )
    html = as_clerk.get(PROFILE).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
