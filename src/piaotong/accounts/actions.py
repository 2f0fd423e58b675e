"""User-center actions needed by issuing: organisations, memberships, API keys.

The full user center (approval of permission changes, 2FA, backups) is its own issue; these
actions already write their audit entry in the same transaction.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from piaotong.accounts.access import Actor
from piaotong.accounts.choices import ApiScope, Role, TaxpayerKind
from piaotong.accounts.models import ApiKey, Membership, Organisation, User, hash_api_secret
from piaotong.ledger.actions import record_audit


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
) -> Organisation:
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
