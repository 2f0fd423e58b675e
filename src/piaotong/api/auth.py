"""API authentication: organisation-scoped API keys (ERP clients) and browser sessions.

Both resolve to an `Actor`, so endpoints never care which one called them.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest
from ninja.security import APIKeyHeader, HttpBearer, SessionAuth

from piaotong.accounts.access import Actor, actor_for_api_key, actor_for_user
from piaotong.accounts.actions import do_record_api_key_use
from piaotong.accounts.models import ApiKey, hash_api_secret


def actor_for_token(token: str) -> Actor | None:
    """The actor of a `pt_<prefix>_<secret>` token, or None if it is unknown or revoked."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "pt":
        return None
    api_key = (
        ApiKey.objects.select_related("organisation")
        .filter(prefix=parts[1], revoked_at=None)
        .first()
    )
    if api_key is None or not hmac.compare_digest(api_key.secret_hash, hash_api_secret(parts[2])):
        return None
    do_record_api_key_use(api_key)
    return actor_for_api_key(api_key)


class ApiKeyAuth(APIKeyHeader):
    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> Actor | None:
        return actor_for_token(key) if key else None


class BearerAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Actor | None:
        return actor_for_token(token)


class SessionActorAuth(SessionAuth):
    def authenticate(self, request: HttpRequest, key: str | None) -> Actor | None:
        user = request.user
        if user.is_authenticated:
            return actor_for_user(user)
        return None


AUTH = [ApiKeyAuth(), BearerAuth(), SessionActorAuth()]
