"""Password policy: at least 12 characters, not common or known from breaches, Argon2id."""

from __future__ import annotations

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import translation

from piaotong.accounts.actions import do_create_user
from piaotong.accounts.models import User
from piaotong.accounts.passwords import BreachedPasswordValidator, breached_passwords
from piaotong.testing import OPERATOR


def refusal(password: str) -> list[str]:
    with translation.override("en"), pytest.raises(ValidationError) as refused:
        validate_password(password)
    return refused.value.messages


def test_it_refuses_a_short_password_and_says_how_long_it_must_be():
    assert "This password is too short. It must contain at least 12 characters." in refusal(
        "Tr0ub4dor&3"
    )


@pytest.mark.parametrize("password", ["1qaz2wsx3edc4rfv", "123qweasdzxc", "LeaveMeAlone"])
def test_it_refuses_a_password_from_the_breach_lists(password):
    assert any("leaked in data breaches" in message for message in refusal(password))


@pytest.mark.parametrize("password", ["Sunshine2024!!", "!!dragon123456", "Iloveyou1314520"])
def test_it_refuses_a_leaked_password_with_digits_or_symbols_around_it(password):
    messages = refusal(password)
    assert any("leaked" in message for message in messages), messages


def test_it_accepts_a_long_unlisted_passphrase():
    validate_password("correct-horse-battery")
    validate_password("蓝色的山和绿色的河流在远方")


def test_it_ships_its_breach_list_beyond_djangos_own():
    listed = breached_passwords()
    assert len(listed) > 39_000
    assert "1qaz2wsx3edc4rfv" in listed  # from the breach list, not from Django's
    BreachedPasswordValidator().validate("a long and unusual phrase")


@pytest.mark.django_db
def test_it_refuses_a_breached_password_when_creating_a_user():
    with pytest.raises(ValidationError):
        do_create_user(OPERATOR, "newcomer", "qwertyuiop123")
    assert not User.objects.filter(username="newcomer").exists()


@pytest.mark.django_db
def test_it_hashes_new_passwords_with_argon2id():
    user = do_create_user(OPERATOR, "newcomer", "correct-horse-battery")
    assert user.password.startswith("argon2$argon2id$")
    assert user.check_password("correct-horse-battery")


@pytest.mark.django_db
def test_it_still_accepts_an_old_pbkdf2_hash_and_upgrades_it_at_login(client: Client):
    user = User.objects.create(username="veteran")
    User.objects.filter(pk=user.pk).update(
        password=make_password("correct-horse-battery", hasher="pbkdf2_sha256")
    )
    response = client.post(
        reverse("accounts:login"), {"username": "veteran", "password": "correct-horse-battery"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")


def test_it_hashes_with_bounded_memory():
    """19 MiB per hash (m=19456 KiB), so concurrent logins stay within a worker's memory budget."""
    from django.contrib.auth.hashers import make_password

    assert "$m=19456,t=2,p=1$" in make_password("correct-horse-battery-staple")
