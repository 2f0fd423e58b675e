"""Logging in and out of the web UI."""

from __future__ import annotations

import pytest
from django.urls import reverse

from piaotong.accounts.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


@pytest.fixture
def member() -> User:
    return User.objects.create_user(username="member", password=PASSWORD)


def test_it_shows_the_login_form(client):
    response = client.get(reverse("accounts:login"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert "csrfmiddlewaretoken" in html


def test_it_logs_in_and_goes_to_the_dashboard(client, member):
    response = client.post(reverse("accounts:login"), {"username": "member", "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == reverse("invoices:dashboard")
    assert client.get(reverse("invoices:dashboard")).status_code == 200


def test_it_returns_to_the_page_asked_for(client, member):
    target = reverse("invoices:list")
    response = client.get(target)
    assert response.url == f"{reverse('accounts:login')}?next={target}"
    response = client.post(
        reverse("accounts:login"), {"username": "member", "password": PASSWORD, "next": target}
    )
    assert response.url == target


def test_it_refuses_a_wrong_password(client, member):
    response = client.post(reverse("accounts:login"), {"username": "member", "password": "wrong"})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert 'class="errors" role="alert"' in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_does_not_follow_a_next_to_another_site(client, member):
    response = client.post(
        reverse("accounts:login"),
        {"username": "member", "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response.url == reverse("invoices:dashboard")


def test_it_logs_out_on_post(client, member):
    client.force_login(member)
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert response.url == reverse("accounts:login")
    assert client.get(reverse("invoices:dashboard")).status_code == 302


def test_it_shows_the_language_switch_on_the_login_page(client):
    html = client.get(reverse("accounts:login")).content.decode()
    assert reverse("set_language") in html
    assert 'value="en"' in html
    assert 'value="zh-hans"' in html
