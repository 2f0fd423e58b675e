"""One-time passwords (一次性密码) for two-factor login: HOTP (RFC 4226) and TOTP (RFC 6238).

Terms: the secret (密钥) is the key shared with the authenticator app, written in base32 so a
person can type it; a time step (时间步) is the number of whole `step`-second periods since the
Unix epoch; a code (验证码) is the 6 to 8 digit value an app shows for one step.

Verification accepts the current step and one step either side (clock drift), and returns the
step that matched: the caller stores it and passes it back as `last_step`, so a code seen once
is never accepted again (RFC 6238 §5.2).

>>> key = b"12345678901234567890"
>>> hotp(key, 0)
'755224'
>>> totp(key, 59, digits=8)
'94287082'
>>> verify_totp(key, "287082", at=30 * 1 + 5)
1
>>> verify_totp(key, "287082", at=30 * 1 + 5, last_step=1) is None
True
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from enum import StrEnum
from urllib.parse import quote, urlencode

DEFAULT_ISSUER = "票通 Piaotong"
DEFAULT_STEP = 30
DEFAULT_DIGITS = 6
SECRET_BYTES = 20  # 160 bits, the length RFC 4226 §4 recommends for HMAC-SHA1


class Algorithm(StrEnum):
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"


_DIGESTS = {
    Algorithm.SHA1: hashlib.sha1,
    Algorithm.SHA256: hashlib.sha256,
    Algorithm.SHA512: hashlib.sha512,
}


def generate_secret(nbytes: int = SECRET_BYTES) -> str:
    """A fresh random secret in base32 without padding, as authenticator apps expect.

    >>> len(generate_secret())
    32
    """
    return base64.b32encode(secrets.token_bytes(nbytes)).decode("ascii").rstrip("=")


def decode_secret(secret: str) -> bytes:
    """The key bytes of a base32 secret; spaces, hyphens, case and missing padding are forgiven.

    >>> decode_secret("gezd gnbv-gy3t qojq")
    b'1234567890'
    >>> decode_secret("not base32!")
    Traceback (most recent call last):
    ...
    ValueError: the secret is not valid base32
    """
    text = secret.replace(" ", "").replace("-", "").upper()
    try:
        key = base64.b32decode(text + "=" * (-len(text) % 8))
    except binascii.Error:
        raise ValueError("the secret is not valid base32") from None
    if not key:
        raise ValueError("the secret is empty")
    return key


def hotp(
    key: bytes, counter: int, *, digits: int = DEFAULT_DIGITS, algorithm: Algorithm = Algorithm.SHA1
) -> str:
    """The HOTP value of `counter` (RFC 4226 §5.3): HMAC, dynamic truncation, modulo 10^digits."""
    if not 6 <= digits <= 8:
        raise ValueError("codes have 6 to 8 digits")
    if counter < 0:
        raise ValueError("the counter cannot be negative")
    mac = hmac.new(key, counter.to_bytes(8, "big"), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(at: float, step: int = DEFAULT_STEP) -> int:
    """The TOTP time step of a Unix time (T0 = 0).

    >>> time_step(59), time_step(60)
    (1, 2)
    """
    return int(at // step)


def totp(
    key: bytes,
    at: float,
    *,
    digits: int = DEFAULT_DIGITS,
    algorithm: Algorithm = Algorithm.SHA1,
    step: int = DEFAULT_STEP,
) -> str:
    """The TOTP value at Unix time `at` (RFC 6238 §4.2)."""
    return hotp(key, time_step(at, step), digits=digits, algorithm=algorithm)


def normalise_code(code: str) -> str:
    """What a person typed, without spaces and hyphens ("123 456" is "123456")."""
    return code.replace(" ", "").replace("-", "").strip()


def verify_totp(
    key: bytes,
    code: str,
    at: float,
    *,
    last_step: int | None = None,
    window: int = 1,
    digits: int = DEFAULT_DIGITS,
    algorithm: Algorithm = Algorithm.SHA1,
    step: int = DEFAULT_STEP,
) -> int | None:
    """The time step whose code is `code`, within `window` steps of `at`; None if none matches.

    Steps not above `last_step` are skipped, so a replayed code (or an older one) is refused.
    Every candidate is compared in constant time.
    """
    code = normalise_code(code)
    if len(code) != digits or not code.isdigit():
        return None
    current = time_step(at, step)
    matched = None
    for candidate in range(current - window, current + window + 1):
        if candidate < 0 or (last_step is not None and candidate <= last_step):
            continue
        expected = hotp(key, candidate, digits=digits, algorithm=algorithm)
        if hmac.compare_digest(expected, code) and matched is None:
            matched = candidate
    return matched


def provisioning_uri(
    secret: str,
    account: str,
    *,
    issuer: str = DEFAULT_ISSUER,
    digits: int = DEFAULT_DIGITS,
    algorithm: Algorithm = Algorithm.SHA1,
    step: int = DEFAULT_STEP,
) -> str:
    """The otpauth:// URI an authenticator app reads from a QR code (Key Uri Format).

    >>> provisioning_uri("GEZDGNBVGY3TQOJQ", "alice@example.com", issuer="ACME Co")
    'otpauth://totp/ACME%20Co:alice%40example.com?secret=GEZDGNBVGY3TQOJQ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30'
    """
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": algorithm.value,
            "digits": digits,
            "period": step,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"
