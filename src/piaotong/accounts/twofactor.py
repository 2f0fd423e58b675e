"""Two-factor login (双因素认证): who must have an authenticator, and checking its codes.

Two-factor login is mandatory (issue 4 part 5) for anyone who approves or can undo what others
did: reviewers (复核员), finance managers (who may red-flush, 红冲), organisation admins, tax
officers, and Django staff and superusers (the admin site). Anyone else may turn it on.

A second factor is a TOTP code from the user's confirmed authenticator (`lib.totp`, RFC 6238)
or one of their single-use recovery codes (恢复码).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import segno
from django.db.models import Exists, OuterRef

from piaotong.accounts.choices import Role
from piaotong.accounts.models import Membership, RecoveryCode, TotpDevice, User
from piaotong.lib import totp

MANDATORY_ROLES = frozenset(
    {
        Role.REVIEWER,
        Role.FINANCE_MANAGER,
        Role.ORG_ADMIN,
        Role.TAX_OFFICER,
        Role.PLATFORM_ADMIN,
    }
)
RECOVERY_CODE_COUNT = 10
# 16 characters of a 32-letter alphabet: 80 random bits, in four groups a person can copy.
RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
RECOVERY_GROUPS = 4

# Annotations `backends.AuthenticationBackend` adds when it loads the user of a request, so the
# per-request check in the middleware costs no query of its own.
HAS_DEVICE = "totp_confirmed"
HOLDS_MANDATORY_ROLE = "totp_mandatory_role"


def two_factor_annotations() -> dict[str, Exists]:
    return {
        HAS_DEVICE: Exists(
            TotpDevice.objects.filter(user=OuterRef("pk"), confirmed_at__isnull=False)
        ),
        HOLDS_MANDATORY_ROLE: Exists(
            Membership.objects.filter(user=OuterRef("pk"), role__in=list(MANDATORY_ROLES))
        ),
    }


def has_confirmed_device(user: User) -> bool:
    known = getattr(user, HAS_DEVICE, None)
    if known is not None:
        return bool(known)
    return TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def is_two_factor_required(user: User) -> bool:
    """Whether this user may use the site only after setting up an authenticator."""
    if user.is_staff or user.is_superuser:
        return True
    known = getattr(user, HOLDS_MANDATORY_ROLE, None)
    if known is not None:
        return bool(known)
    return Membership.objects.filter(user=user, role__in=list(MANDATORY_ROLES)).exists()


def confirmed_device(user: User) -> TotpDevice | None:
    return TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).first()


# --- TOTP codes ------------------------------------------------------------------------


def matching_step(device: TotpDevice, code: str, now: datetime) -> int | None:
    """The time step of `code` if it is valid now and newer than the last one used."""
    return totp.verify_totp(
        totp.decode_secret(device.secret),
        code,
        now.timestamp(),
        last_step=device.last_used_step,
    )


def provisioning_uri(device: TotpDevice) -> str:
    return totp.provisioning_uri(device.secret, device.user.username)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no inline style or script: the CSP allows it)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, dark="#111", light="#fff"))


def spaced_secret(secret: str) -> str:
    """The secret in groups of four, easier to type into an app by hand.

    >>> spaced_secret("GEZDGNBVGY3TQOJQ")
    'GEZD GNBV GY3T QOJQ'
    """
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


# --- Recovery codes --------------------------------------------------------------------


def new_recovery_codes() -> list[str]:
    return [
        "-".join(
            "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(4))
            for _ in range(RECOVERY_GROUPS)
        )
        for _ in range(RECOVERY_CODE_COUNT)
    ]


def normalise_recovery_code(code: str) -> str:
    """What a person typed, as stored: no spaces or hyphens, upper case.

    >>> normalise_recovery_code(" abcd-efgh jkmn-pqrs ")
    'ABCDEFGHJKMNPQRS'
    """
    return totp.normalise_code(code).upper()


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    return len(normalise_recovery_code(code)) == 4 * RECOVERY_GROUPS


def unused_recovery_code(user: User, code: str) -> RecoveryCode | None:
    if not looks_like_recovery_code(code):
        return None
    return RecoveryCode.objects.filter(
        user=user, code_hash=hash_recovery_code(code), used_at=None
    ).first()
