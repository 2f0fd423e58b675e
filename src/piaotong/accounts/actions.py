"""User-center actions (用户中心): organisations, users, bootstrap role grants, API keys, logins,
two-factor authentication and profiles. Each writes its audit entry in the same transaction.

Role changes after bootstrap go through requests and approval: `accounts.role_requests`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts import throttle, twofactor
from piaotong.accounts.access import Actor
from piaotong.accounts.choices import ApiScope, OrganisationKind, Role, TaxpayerKind
from piaotong.accounts.models import (
    ApiKey,
    Membership,
    Organisation,
    RecoveryCode,
    TotpDevice,
    User,
    hash_api_secret,
)
from piaotong.ledger.actions import record_audit
from piaotong.ledger.models import AuditEntry
from piaotong.lib import totp
from piaotong.lib.errors import RuleViolation


def do_register_organisation(
    actor: Actor,
    *,
    name: str,
    tax_id: str,
    region: str,
    taxpayer_kind: str = TaxpayerKind.GENERAL,
    address: str = "",
    phone: str = "",
    bank_name: str = "",
    bank_account: str = "",
    issuing_quota: Decimal | None = None,
    requires_dual_review: bool = False,
    kind: str = OrganisationKind.TAXPAYER,
) -> Organisation:
    """Register an approved organisation directly: the operator's bootstrap path (demo, tests,
    tax bureaus). Taxpayers apply through `accounts.registration.do_apply_for_registration`."""
    organisation = Organisation(
        name=name.strip(),
        tax_id=tax_id,
        region=region,
        taxpayer_kind=taxpayer_kind,
        address=address,
        phone=phone,
        bank_name=bank_name,
        bank_account=bank_account,
        requires_dual_review=requires_dual_review,
        kind=kind,
    )
    if issuing_quota is not None:
        organisation.issuing_quota = issuing_quota
    organisation.full_clean()
    with transaction.atomic():
        organisation.save()
        record_audit(
            actor,
            "organisation.registered",
            f"organisation:{organisation.tax_id}",
            organisation.pk,
            {"name": organisation.name},
        )
    return organisation


def do_create_user(
    actor: Actor, username: str, password: str, *, full_name: str = "", email: str = ""
) -> User:
    """A new login; the password is checked against the password validators first."""
    user = User(username=username.strip(), first_name=full_name.strip(), email=email.strip())
    validate_password(password, user)
    user.set_password(password)
    user.full_clean(exclude=["password"])
    with transaction.atomic():
        user.save()
        record_audit(
            actor, "user.created", f"user:{user.username}", None, {"name": user.first_name}
        )
    return user


def do_grant_role(actor: Actor, user: User, organisation: Organisation, role: Role) -> Membership:
    """Grant a role directly, without approval: the bootstrap path only.

    It makes the first admins of an organisation (demo data and test factories), before
    anyone exists who could approve. Every other change of roles goes through maker-checker
    (`accounts.role_requests.do_request_role_change`, approved by a second admin); no UI or
    API calls this.
    """
    with transaction.atomic():
        membership, _ = Membership.objects.get_or_create(
            user=user, organisation=organisation, role=role
        )
        record_audit(
            actor, "role.granted", f"user:{user.username}", organisation.pk, {"role": role.value}
        )
    return membership


def do_create_api_key(
    actor: Actor, organisation: Organisation, name: str, scopes: list[ApiScope]
) -> tuple[ApiKey, str]:
    """Create an API key; the token is returned once and never stored."""
    prefix, secret, token = ApiKey.new_secret()
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            organisation=organisation,
            name=name,
            prefix=prefix,
            secret_hash=hash_api_secret(secret),
            scopes=[s.value for s in scopes],
            created_by=actor.user,
        )
        record_audit(
            actor,
            "api_key.created",
            f"api_key:{prefix}",
            organisation.pk,
            {"name": name, "scopes": api_key.scopes},
        )
    return api_key, token


def do_revoke_api_key(actor: Actor, api_key: ApiKey) -> ApiKey:
    """Revoke a key for good; requests with it are refused from the next one on."""
    with transaction.atomic():
        api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if api_key.revoked_at is None:
            api_key.revoked_at = timezone.now()
            api_key.save(update_fields=["revoked_at"])
            record_audit(
                actor, "api_key.revoked", f"api_key:{api_key.prefix}", api_key.organisation_id
            )
    return api_key


# --- Two-factor authentication, logins and the profile ---------------------------------


class LoginFailure(StrEnum):
    BAD_CREDENTIALS = "bad_credentials"  # unknown username or wrong password: never told apart
    BAD_SECOND_FACTOR = "bad_second_factor"
    LOCKED = "locked"  # refused before the password was checked


INVALID_CODE = _(
    "That code is not valid. Enter the 6-digit code your authenticator app shows now (or a "
    "recovery code where offered), and check that the phone sets its clock automatically."
)


@dataclass
class Visitor(Actor):
    """Someone not logged in, known by their IP address: the actor of a failed login."""

    ip: str = ""

    @property
    def label(self) -> str:
        return f"anonymous {self.ip}".strip()

    @property
    def principal(self) -> str:
        return f"ip:{self.ip}" if self.ip else "anonymous"


def do_record_login(
    username: str,
    ip: str,
    *,
    succeeded: bool,
    reason: str,
    user: User | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Audit one login attempt and count it for throttling, in one transaction.

    `reason` is the method of a success ("password") or a `LoginFailure`. The password is never
    recorded; a failure names the username as typed and the IP address. A refusal because of a
    lock is audited but not counted again.
    """
    with transaction.atomic():
        return _record_login(username, ip, succeeded, reason, user, now or timezone.now())


def _record_login(
    username: str, ip: str, succeeded: bool, reason: str, user: User | None, now: datetime
) -> AuditEntry:
    if succeeded:
        assert user is not None
        throttle.forget_username(user.username, now)
        return record_audit(
            Actor(user=user),
            "login.succeeded",
            f"user:{user.username}",
            None,
            {"ip": ip, "method": reason},
        )
    if reason != LoginFailure.LOCKED:
        throttle.record_failure(username, ip, now)
    return record_audit(
        Visitor(ip=ip),
        "login.failed",
        f"user:{username.strip()[:100]}",
        None,
        {"ip": ip, "reason": reason},
    )


def do_verify_second_factor(
    user: User, code: str, ip: str, now: datetime | None = None
) -> str | None:
    """Check the second step of a login: a TOTP code or an unused recovery code.

    Returns how it was proved ("totp", "recovery_code") or None. Either way the attempt is
    audited and a failure counts towards the lockout, like a wrong password.
    """
    now = now or timezone.now()
    with transaction.atomic():
        method = _prove_second_factor(user, code, now, allow_recovery=True)
        _record_login(
            user.username,
            ip,
            method is not None,
            method or LoginFailure.BAD_SECOND_FACTOR,
            user,
            now,
        )
    return method


def _prove_second_factor(
    user: User, code: str, now: datetime, *, allow_recovery: bool
) -> str | None:
    """Consume a valid code of the user's confirmed authenticator, or one recovery code.

    The device row is locked, so two requests carrying the same code cannot both pass.
    """
    device = (
        TotpDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).first()
    )
    if device is None:
        return None
    step = twofactor.matching_step(device, code, now)
    if step is not None:
        device.last_used_step = step
        device.save(update_fields=["last_used_step"])
        return "totp"
    recovery = twofactor.unused_recovery_code(user, code) if allow_recovery else None
    if recovery is not None:
        RecoveryCode.objects.filter(pk=recovery.pk, used_at=None).update(used_at=now)
        return "recovery_code"
    return None


def do_begin_totp_setup(actor: Actor, user: User) -> TotpDevice:
    """The user's authenticator awaiting confirmation, created with a fresh secret if needed.

    Reloading the set-up page keeps the same secret, so an app that already scanned it works.
    """
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user).first()
        if device is not None and device.is_confirmed:
            raise RuleViolation(
                "code",
                "totp_already_enabled",
                _("Two-factor login is already on. Turn it off first to move it to a new phone."),
            )
        if device is None:
            device = TotpDevice.objects.create(user=user, secret=totp.generate_secret())
            record_audit(actor, "totp.setup_started", f"user:{user.username}")
    return device


def do_confirm_totp(actor: Actor, user: User, code: str, now: datetime | None = None) -> list[str]:
    """Turn two-factor login on once the user proves a code; returns the recovery codes, once."""
    now = now or timezone.now()
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user, confirmed_at=None).first()
        if device is None:
            raise RuleViolation(
                "code",
                "totp_not_started",
                _("Start the set-up again: no authenticator is waiting."),
            )
        step = twofactor.matching_step(device, code, now)
        if step is None:
            raise RuleViolation("code", "totp_invalid", INVALID_CODE)
        device.confirmed_at, device.last_used_step = now, step
        device.save(update_fields=["confirmed_at", "last_used_step"])
        codes = _issue_recovery_codes(user)
        record_audit(actor, "totp.enabled", f"user:{user.username}")
    return codes


def do_regenerate_recovery_codes(
    actor: Actor, user: User, code: str, now: datetime | None = None
) -> list[str]:
    """Replace all recovery codes, used or not; a current authenticator code is required."""
    now = now or timezone.now()
    with transaction.atomic():
        if _prove_second_factor(user, code, now, allow_recovery=False) is None:
            raise RuleViolation("code", "totp_invalid", INVALID_CODE)
        codes = _issue_recovery_codes(user)
        record_audit(actor, "totp.recovery_codes_regenerated", f"user:{user.username}")
    return codes


def do_disable_totp(actor: Actor, user: User, code: str, now: datetime | None = None) -> None:
    """Turn two-factor login off; a current authenticator code or a recovery code is required.

    A user whose role requires two-factor login is sent to set up a new authenticator at once
    (`accounts.middleware`), so for them this is how a lost phone is replaced.
    """
    now = now or timezone.now()
    with transaction.atomic():
        if _prove_second_factor(user, code, now, allow_recovery=True) is None:
            raise RuleViolation("code", "totp_invalid", INVALID_CODE)
        TotpDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        record_audit(actor, "totp.disabled", f"user:{user.username}")


def _issue_recovery_codes(user: User) -> list[str]:
    codes = twofactor.new_recovery_codes()
    RecoveryCode.objects.filter(user=user).delete()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(user=user, code_hash=twofactor.hash_recovery_code(code)) for code in codes
    )
    return codes


PROFILE_FIELDS = ("first_name", "last_name", "phone", "email", "language")


def do_update_profile(
    actor: Actor, user: User, *, full_name: str, phone: str, email: str, language: str
) -> User:
    """Change a user's own name, phone, email and language; the audit names the fields only."""
    if language not in {code for code, _name in settings.LANGUAGES}:
        raise RuleViolation(
            "language", "unknown_language", _("Choose one of the listed languages.")
        )
    before = {field: getattr(user, field) for field in PROFILE_FIELDS}
    user.first_name, user.last_name = full_name.strip(), ""
    user.phone, user.email, user.language = phone.strip(), email.strip(), language
    user.full_clean(exclude=["password"])
    changed = [field for field in PROFILE_FIELDS if getattr(user, field) != before[field]]
    with transaction.atomic():
        user.save(update_fields=PROFILE_FIELDS)
        record_audit(
            actor, "user.profile_updated", f"user:{user.username}", None, {"fields": changed}
        )
    return user


def do_record_api_key_use(api_key: ApiKey) -> None:
    """Note that a key was used; its first use of each day (Asia/Shanghai) is audited.

    One audit entry per key per day keeps "which integrations acted, and when" in the chain
    without an audit write on every read request.
    """
    now = timezone.now()
    first_today = api_key.last_used_at is None or timezone.localdate(
        api_key.last_used_at
    ) != timezone.localdate(now)
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        if first_today:
            record_audit(
                Actor(api_key=api_key),
                "api_key.used",
                f"api_key:{api_key.prefix}",
                api_key.organisation_id,
            )
