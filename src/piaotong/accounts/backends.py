"""The authentication backend: Django's, loading each request's user with its two-factor status.

The login middleware asks on every request whether the user must have, or has, an
authenticator; loading both facts with the user (two EXISTS subqueries) keeps that check free.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from piaotong.accounts.models import User
from piaotong.accounts.twofactor import two_factor_annotations


class AuthenticationBackend(ModelBackend):
    def get_user(self, user_id: Any) -> User | None:
        user = User.objects.annotate(**two_factor_annotations()).filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None
