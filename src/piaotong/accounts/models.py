"""Taxpayers (纳税人), users, memberships with roles, and API keys for machine clients."""

from __future__ import annotations

import hashlib
import secrets
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.choices import ApiScope, Role, TaxpayerKind
from piaotong.lib.errors import RuleViolation
from piaotong.lib.regions import get_region
from piaotong.lib.taxid import validate_uscc


class User(AbstractUser):
    """A person who logs in. Invariant: what they may see and do comes only from memberships."""

    phone = models.CharField(_("phone"), max_length=20, blank=True)
    language = models.CharField(_("language"), max_length=10, default="zh-hans")


class Organisation(models.Model):
    """A taxpayer (纳税人) that issues or receives invoices.

    Invariants: `tax_id` is a valid 统一社会信用代码 and unique; `region` is the two-digit
    provincial region whose tax bureau the taxpayer belongs to; `issuing_quota` (授信额度) is the
    monthly ceiling of pre-tax amounts it may issue.
    """

    name = models.CharField(_("name"), max_length=200)
    tax_id = models.CharField(_("unified social credit code"), max_length=20, unique=True)
    region = models.CharField(_("region"), max_length=2)
    taxpayer_kind = models.CharField(
        _("taxpayer kind"),
        max_length=20,
        choices=TaxpayerKind.choices,
        default=TaxpayerKind.GENERAL,
    )
    address = models.CharField(_("address"), max_length=300, blank=True)
    phone = models.CharField(_("phone"), max_length=40, blank=True)
    bank_name = models.CharField(_("bank"), max_length=200, blank=True)
    bank_account = models.CharField(_("bank account"), max_length=60, blank=True)
    issuing_quota = models.DecimalField(
        _("monthly issuing quota (授信额度)"),
        max_digits=18,
        decimal_places=2,
        default=Decimal("10000000.00"),
    )
    requires_dual_review = models.BooleanField(
        _("requires dual review (双人复核)"),
        default=False,
        help_text=_("Every draft must be approved by a second user with the reviewer role."),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("organisation")

    def __str__(self) -> str:
        return f"{self.name} ({self.tax_id})"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        try:
            self.tax_id = validate_uscc(self.tax_id)
        except RuleViolation as violation:
            errors["tax_id"] = violation.text()
        if get_region(self.region) is None:
            errors["region"] = str(
                _("Unknown region code; use the two-digit GB/T 2260 province code.")
            )
        if errors:
            raise ValidationError(errors)

    @property
    def is_small_scale(self) -> bool:
        return self.taxpayer_kind == TaxpayerKind.SMALL_SCALE


class Membership(models.Model):
    """A user's role in one organisation. Invariant: one row per (user, organisation, role)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organisation", "role"], name="membership_unique_role"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.organisation.name} · {self.get_role_display()}"


def hash_api_secret(secret: str) -> str:
    # API secrets are 256-bit random values, so a plain SHA-256 is enough to store them safely.
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    """An organisation-scoped credential for ERP integration.

    Invariants: only the SHA-256 of the secret is stored; `prefix` identifies the key in logs;
    a revoked key never authenticates again.
    """

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @staticmethod
    def new_secret() -> tuple[str, str, str]:
        """A fresh (prefix, secret, token); the token `pt_<prefix>_<secret>` is shown once."""
        prefix = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        return prefix, secret, f"pt_{prefix}_{secret}"

    def has_scope(self, scope: ApiScope) -> bool:
        return scope.value in self.scopes
