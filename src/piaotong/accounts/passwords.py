"""Password policy (密码策略) beyond Django's validators: refuse passwords known from breaches.

Works offline: the list is `data/breached-passwords.txt.gz` (about 20,000 leaked passwords, see
`data/README.md` for its source and limits) together with Django's 20,000 common passwords.
A listed password with digits or symbols around it ("iloveyou2024!") is refused too, since
cracking tools try exactly those variants first.

>>> BreachedPasswordValidator().validate("correct-horse-battery")
>>> try:
...     BreachedPasswordValidator().validate("Qwertyuiop2024!")
... except ValidationError as refusal:
...     print(refusal.code)
password_breached_variant
"""

from __future__ import annotations

import gzip
import re
from functools import cache
from pathlib import Path
from typing import Any

from django.contrib.auth.hashers import Argon2PasswordHasher
from django.contrib.auth.password_validation import CommonPasswordValidator
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

BREACHED_LIST = Path(__file__).resolve().parent / "data" / "breached-passwords.txt.gz"
MIN_STEM_LENGTH = 4
_DECORATION = re.compile(r"^[\d\W_]+|[\d\W_]+$")


@cache
def breached_passwords() -> frozenset[str]:
    words: set[str] = set()
    for path in (BREACHED_LIST, Path(CommonPasswordValidator().DEFAULT_PASSWORD_LIST_PATH)):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            words.update(line.strip() for line in lines if line.strip())
    return frozenset(words)


class BreachedPasswordValidator:
    """A Django password validator; configured in settings.AUTH_PASSWORD_VALIDATORS."""

    def validate(self, password: str, user: Any = None) -> None:
        lowered = password.strip().casefold()
        listed = breached_passwords()
        if lowered in listed:
            raise ValidationError(
                _(
                    "This password appears in lists of passwords leaked in data breaches, so "
                    "attackers try it early. Choose another one, for example three or four "
                    "unrelated words."
                ),
                code="password_breached",
            )
        stem = _DECORATION.sub("", lowered)
        if stem != lowered and len(stem) >= MIN_STEM_LENGTH and stem in listed:
            raise ValidationError(
                _(
                    "This password is a leaked password with digits or symbols added, which "
                    "attackers try early. Choose another one, for example three or four "
                    "unrelated words."
                ),
                code="password_breached_variant",
            )

    def get_help_text(self) -> str:
        return _(
            "Your password can't be one found in lists of leaked passwords, even with digits or "
            "symbols added."
        )


class Argon2idHasher(Argon2PasswordHasher):
    """Argon2id at OWASP's recommended parameters (19 MiB, 2 passes, 1 lane).

    Django's default asks for 100 MiB per hash: four logins at once in one gthread worker would
    push it past the 300 MB a web process may use. Same algorithm name, so existing hashes
    verify, and hashes with other parameters are upgraded at the next login.
    """

    time_cost = 2
    memory_cost = 19456
    parallelism = 1
