"""Settings of verification (查验) and delivery (交付), with their defaults.

Each value is read from Django settings when the project's settings module defines it, else from
the environment variable of the same name, else the default below; a value that is not a whole
number fails loudly. Read on every use, so tests and benchmarks can override them.

=================================== ======= ==================================================
name                                default meaning
=================================== ======= ==================================================
PIAOTONG_VERIFY_DAILY_LIMIT         5       checks per invoice per natural day (Asia/Shanghai)
PIAOTONG_VERIFY_YEARS               5       invoices older than this many years are refused
PIAOTONG_VERIFY_RATE_ANON           30      checks per minute from one anonymous IP address
PIAOTONG_VERIFY_RATE_USER           300     checks per minute from one user or API key
PIAOTONG_VERIFY_MISS_LIMIT_ANON     20      查无此票/不一致 answers per hour before one anonymous
                                            IP address is blocked for the rest of the hour
PIAOTONG_VERIFY_MISS_LIMIT_USER     200     the same for one user or API key
PIAOTONG_VERIFY_BULK_MAX_ROWS       500     rows (or files) in one bulk verification
PIAOTONG_DELIVERY_MAX_ATTEMPTS      6       sending attempts before a delivery gives up
PIAOTONG_DELIVERY_CODE_HOURS        72      lifetime of a download link sent by SMS
PIAOTONG_VERIFY_SYNC_COMMIT         false   true: each check's counters and log row wait for
                                            the disk on commit (see docs/verification.md)
=================================== ======= ==================================================
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, int] = {
    "PIAOTONG_VERIFY_DAILY_LIMIT": 5,
    "PIAOTONG_VERIFY_YEARS": 5,
    "PIAOTONG_VERIFY_RATE_ANON": 30,
    "PIAOTONG_VERIFY_RATE_USER": 300,
    "PIAOTONG_VERIFY_MISS_LIMIT_ANON": 20,
    "PIAOTONG_VERIFY_MISS_LIMIT_USER": 200,
    "PIAOTONG_VERIFY_BULK_MAX_ROWS": 500,
    "PIAOTONG_DELIVERY_MAX_ATTEMPTS": 6,
    "PIAOTONG_DELIVERY_CODE_HOURS": 72,
}


def setting(name: str) -> int:
    """The configured whole number `name` (at least 1)."""
    value: object = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, str(DEFAULTS[name]))
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name}={value!r}: a whole number is needed") from None
    if number < 1:
        raise ImproperlyConfigured(f"{name}={value!r}: at least 1")
    return number


FLAGS: dict[str, bool] = {"PIAOTONG_VERIFY_SYNC_COMMIT": False}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def flag(name: str) -> bool:
    """The configured yes/no value `name`."""
    value: object = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name, str(FLAGS[name]))
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ImproperlyConfigured(f"{name}={value!r}: true or false is needed")
