"""Taxpayers (纳税人), users, memberships with roles, and API keys for machine clients."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.choices import (
    INVITATION_TRANSITIONS,
    ROLE_CHANGE_TRANSITIONS,
    ApiScope,
    InvitationStatus,
    OrganisationKind,
    OrganisationStatus,
    Role,
    RoleChange,
    RoleChangeStatus,
    TaxpayerKind,
)
from piaotong.fields import EncryptedTextField
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
    monthly ceiling of pre-tax amounts it may issue. Only an `approved` organisation issues or
    drafts; an application (注册申请) starts `pending` and a tax officer of a bureau of the same
    region decides it once (`accounts.registration`), naming themself in `reviewed_by` with
    `reviewed_at`; a rejection always carries its reason in `review_note`.
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
    bank_account = EncryptedTextField(_("bank account"), max_length=60, blank=True)
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
    kind = models.CharField(
        _("organisation kind"),
        max_length=20,
        choices=OrganisationKind.choices,
        default=OrganisationKind.TAXPAYER,
    )
    status = models.CharField(
        _("registration status"),
        max_length=10,
        choices=OrganisationStatus.choices,
        default=OrganisationStatus.APPROVED,
    )
    review_note = models.TextField(_("review note"), max_length=500, blank=True)
    reviewed_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    # After a rejection the applicant re-applies with new documents and says what changed.
    applicant_note = models.TextField(_("applicant's note"), max_length=500, blank=True)
    applications = models.PositiveSmallIntegerField(_("applications"), default=1)
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

    @property
    def is_approved(self) -> bool:
        return self.status == OrganisationStatus.APPROVED

    @property
    def is_pending(self) -> bool:
        return self.status == OrganisationStatus.PENDING

    @property
    def is_rejected(self) -> bool:
        return self.status == OrganisationStatus.REJECTED

    @property
    def is_tax_bureau(self) -> bool:
        return self.kind == OrganisationKind.TAX_BUREAU


def qualification_path(instance: QualificationDocument, filename: str) -> str:
    """A random stored name: nothing the applicant typed reaches the file system."""
    suffix = filename.rsplit(".", 1)[-1] if "." in filename else "bin"
    return f"qualifications/{secrets.token_hex(16)}.{suffix}"


class QualificationDocument(models.Model):
    """One qualification document (资质证明) of an organisation's registration application.

    Invariants: `content_type` was detected from the file's first bytes (PDF, PNG or JPEG), never
    taken from the browser or the name; `sha256` and `size` describe the stored bytes; the file
    is stored under a random name in the default storage (MEDIA_ROOT), which is not served: only
    the reviewing officer downloads it, through a view that checks their authority.
    """

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="documents"
    )
    original_name = models.CharField(_("file name"), max_length=255)
    file = models.FileField(upload_to=qualification_path, max_length=200)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField(_("size"))
    content_type = models.CharField(_("file type"), max_length=40)
    uploaded_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    uploaded_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)

    class Meta:
        ordering = ["organisation", "pk"]
        verbose_name = _("qualification document")

    def __str__(self) -> str:
        return f"{self.original_name} · {self.organisation_id}"


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


# --- Two-factor authentication and login throttling ---
# Terms: an authenticator (身份验证器) is the app holding a user's TOTP secret; a recovery code
# (恢复码) replaces it once when the phone is lost; a throttle (登录限流) counts failed logins.


class TotpDevice(models.Model):
    """A user's authenticator app, bound by a shared TOTP secret (RFC 6238, SHA-1, 6 digits, 30 s).

    Invariants: at most one per user; the device counts as a second factor only once
    `confirmed_at` is set, which happens only after the user entered a valid code from it;
    `last_used_step` only grows, and a code whose time step is not above it is refused (no
    replay). The base32 `secret` is shown only on the setup page before confirmation and never
    logged or displayed in the admin; it is stored encrypted (`EncryptedTextField`), so a
    copy of the database alone cannot generate codes.
    """

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="totp_device")
    secret = EncryptedTextField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_used_step = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = _("authenticator")

    def __str__(self) -> str:
        return f"TOTP · {self.user}"

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None


class RecoveryCode(models.Model):
    """One single-use recovery code of a user with an authenticator.

    Invariants: only the SHA-256 of the code is stored (codes carry 80 random bits, so a plain
    hash is safe, as for API secrets); a user holds exactly the batch issued last, 10 codes
    (issuing a batch deletes the previous one); `used_at` is set once and never cleared.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="recovery_codes")
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "code_hash"], name="recovery_code_unique")
        ]
        verbose_name = _("recovery code")

    def __str__(self) -> str:
        return f"recovery code · {self.user}"


class ThrottleScope(models.TextChoices):
    USERNAME = "username", _("username")
    IP = "ip", _("IP address")
    REGISTRATION = "register", _("registration applications per IP address")
    INVITATION = "invite", _("invitation acceptances per IP address")


class LoginThrottle(models.Model):
    """Failed logins counted per username, or per client IP address, within a window.

    Invariants: one row per (scope, key); the username key is case-folded and need not name an
    existing user (so a lockout reveals nothing about which usernames exist); `failures` counts
    the failures since `window_started_at`; while `locked_until` is in the future every login
    attempt on the key is refused before the password is checked. The arithmetic is in
    `accounts.throttle`.
    """

    scope = models.CharField(max_length=10, choices=ThrottleScope.choices)
    key = models.CharField(max_length=150)
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="login_throttle_unique_key")
        ]
        verbose_name = _("login throttle")

    def __str__(self) -> str:
        return f"{self.scope}:{self.key} ({self.failures})"


# --- Permission change requests (maker-checker) ---


class MakerCheckerRequest(models.Model):
    """What every request decided by a second person (双人审批) records: why it was asked, by
    whom and when, and who decided, when and with what note. Subclasses add their status."""

    reason = models.TextField(_("reason"), max_length=500)
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(_("requested at"), auto_now_add=True)
    decided_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_note = models.TextField(_("decision note"), max_length=500, blank=True)

    class Meta:
        abstract = True


class RoleChangeRequest(MakerCheckerRequest):
    """A request to grant or revoke one role of one user in one organisation (权限变更申请).

    Maker-checker (双人审批): one admin asks, a different admin decides; approving applies the
    change to `Membership` in the same transaction.

    Invariants: `reason` is never blank; `decided_by` is neither `requested_by` (no
    self-approval) nor `user` (no self-elevation); at most one pending request per
    (organisation, user, role); a decision is final: only a pending request changes status
    (`ROLE_CHANGE_TRANSITIONS`); approved and rejected requests name who decided and when,
    withdrawn ones were withdrawn by their requester and record only when.
    """

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="role_change_requests"
    )
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="role_change_requests")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    change = models.CharField(_("change"), max_length=10, choices=RoleChange.choices)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=RoleChangeStatus.choices,
        default=RoleChangeStatus.PENDING,
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = _("permission change request")
        indexes = [models.Index(fields=["organisation", "status"], name="role_change_org_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "user", "role"],
                condition=models.Q(status=RoleChangeStatus.PENDING),
                name="role_change_one_pending",
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="role_change_reason_given"),
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True)
                | (
                    ~models.Q(decided_by=models.F("requested_by"))
                    & ~models.Q(decided_by=models.F("user"))
                ),
                name="role_change_four_eyes",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    status=RoleChangeStatus.PENDING,
                    decided_by__isnull=True,
                    decided_at__isnull=True,
                )
                | models.Q(
                    status=RoleChangeStatus.WITHDRAWN,
                    decided_by__isnull=True,
                    decided_at__isnull=False,
                )
                | models.Q(
                    status__in=[RoleChangeStatus.APPROVED, RoleChangeStatus.REJECTED],
                    decided_by__isnull=False,
                    decided_at__isnull=False,
                ),
                name="role_change_decision_recorded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_change_display()} {self.get_role_display()} · {self.user_id}"

    @property
    def is_pending(self) -> bool:
        return self.status == RoleChangeStatus.PENDING

    @property
    def is_grant(self) -> bool:
        return self.change == RoleChange.GRANT

    def can_transition_to(self, status: RoleChangeStatus) -> bool:
        return status in ROLE_CHANGE_TRANSITIONS[RoleChangeStatus(self.status)]

    def is_requested_by(self, user: User) -> bool:
        return self.requested_by_id == user.pk

    def concerns(self, user: User) -> bool:
        """Whether `user` is the person whose role would change."""
        return self.user_id == user.pk


# --- Invitations ---
# Terms: an invitation (邀请) asks a person without an account to join an organisation in one
# role; its acceptance link (邀请链接) carries a one-time token; accepting (接受邀请) creates the
# login and the membership.


def hash_invitation_token(token: str) -> str:
    # Tokens are 256-bit random values, so a plain SHA-256 stores them safely (as API secrets).
    return hashlib.sha256(token.encode()).hexdigest()


class Invitation(MakerCheckerRequest):
    """An invitation of a new user to one role of one organisation, under maker-checker.

    Invariants: `role` is one of `ORGANISATION_ROLES` (checked by the actions); `reason` is
    never blank; `decided_by` is never `requested_by` (no self-approval); at most one open
    (pending or approved) invitation per (organisation, email); a decision is final
    (`INVITATION_TRANSITIONS`). Approval stores only `token_hash`, the SHA-256 of a 256-bit
    random token, and `expires_at`; the token itself is shown once to the approver and never
    stored, logged or audited. An accepted invitation names the user it created and when.
    """

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="invitations"
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices)
    email = models.EmailField(_("email"))
    full_name = models.CharField(_("full name"), max_length=150)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=InvitationStatus.choices,
        default=InvitationStatus.PENDING,
    )
    token_hash = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    accepted_user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = _("invitation")
        indexes = [models.Index(fields=["organisation", "status"], name="invitation_org_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "email"],
                condition=models.Q(
                    status__in=[InvitationStatus.PENDING, InvitationStatus.APPROVED]
                ),
                name="invitation_one_open",
            ),
            models.UniqueConstraint(
                fields=["token_hash"],
                condition=~models.Q(token_hash=""),
                name="invitation_token_unique",
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="invitation_reason_given"),
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True)
                | ~models.Q(decided_by=models.F("requested_by")),
                name="invitation_four_eyes",
            ),
            models.CheckConstraint(
                condition=~models.Q(
                    status__in=[InvitationStatus.APPROVED, InvitationStatus.ACCEPTED]
                )
                | models.Q(decided_by__isnull=False, expires_at__isnull=False)
                & ~models.Q(token_hash=""),
                name="invitation_link_issued",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=InvitationStatus.ACCEPTED)
                | models.Q(accepted_user__isnull=False, accepted_at__isnull=False),
                name="invitation_acceptance_recorded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} · {self.get_role_display()} · {self.organisation_id}"

    @property
    def is_pending(self) -> bool:
        return self.status == InvitationStatus.PENDING

    def can_transition_to(self, status: InvitationStatus) -> bool:
        return status in INVITATION_TRANSITIONS[InvitationStatus(self.status)]

    def is_requested_by(self, user: User) -> bool:
        return self.requested_by_id == user.pk

    def has_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def is_link_lapsed(self) -> bool:
        """An issued link whose seven days have passed without acceptance."""
        return self.status == InvitationStatus.APPROVED and self.has_expired(timezone.now())
