"""Verification (查验) records, its limit counters, and delivery (交付) of invoices to buyers."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import User
from piaotong.fields import EncryptedTextField
from piaotong.invoices.models import Invoice
from piaotong.verification.choices import (
    DeliveryChannel,
    DeliveryStatus,
    InputKind,
    Outcome,
    VerifyChannel,
)


class ClientCounter(models.Model):
    """Checks and misses of one client in the current fixed windows (limits.py).

    Invariants: one row per client key ("user:<id>", "apikey:<id>" or "ip:<hmac of the address>",
    never a raw address); `hits` counts checks since `rate_window` (epoch seconds, minute-aligned),
    `misses` counts 查无此票/不一致 answers since `miss_window` (hour-aligned). Written only by the
    single upsert in `limits.count_client`.
    """

    client = models.CharField(max_length=80, unique=True)
    rate_window = models.BigIntegerField()
    hits = models.PositiveIntegerField(default=0)
    miss_window = models.BigIntegerField()
    misses = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.client}: {self.hits} hits, {self.misses} misses"


class DailyCheckCount(models.Model):
    """Checks of one invoice on one natural day (Asia/Shanghai), whoever asked.

    Invariants: one row per (identifier, day); `ident` is the 20-digit number of a 数电票 or
    "<code>:<number>" of a legacy one, as typed when the invoice is unknown here.
    """

    ident = models.CharField(max_length=40)
    day = models.DateField()
    checks = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ident", "day"], name="verification_daily_unique")
        ]

    def __str__(self) -> str:
        return f"{self.ident} {self.day}: {self.checks}"


class VerificationLog(models.Model):
    """One verification attempt, whatever its answer (查验日志).

    Invariants: append-only; the client is recorded as the principal ("user:<id>", "apikey:<id>")
    and/or a keyed hash of the IP address, never the raw address; `invoice` is set when the
    identifier named an invoice this node holds; `differing` lists field names only, never values.
    """

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    principal = models.CharField(max_length=40, blank=True)
    ip_hash = models.CharField(max_length=32, blank=True)
    channel = models.CharField(max_length=10, choices=VerifyChannel.choices)
    input_kind = models.CharField(max_length=10, choices=InputKind.choices)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    identifier = models.CharField(max_length=40, blank=True)
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    differing = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("verification log entry")

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.identifier} {self.outcome}"


class BulkVerification(models.Model):
    """The results table of one bulk verification (批量查验), kept so it can be exported.

    Invariants: `rows` is written once, by `actions.do_verify_bulk`; each row holds what the
    requester was shown (no stored values of invoices they are not a party to).
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    source_name = models.CharField(max_length=200, blank=True)
    rows = models.JSONField(default=list)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.source_name} ({len(self.rows)} rows)"


class Delivery(models.Model):
    """Sending an issued invoice to its buyer (交付) by email or by SMS download link.

    Invariants: `address` (an email address or a phone number) is stored encrypted; `attempts`
    equals the number of its DeliveryAttempt rows; `sent_at` is set exactly when the status is
    sent; a pending delivery has `next_attempt_at`; a sending one is claimed until
    `claimed_until` (a crashed sender's claim simply runs out).
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(_("channel"), max_length=10, choices=DeliveryChannel.choices)
    address = EncryptedTextField(_("address"), max_length=254)
    formats = models.CharField(max_length=20, default="pdf")
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # Where download links point (the site's address as the requester reached it).
    link_base = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    requested_by_label = models.CharField(max_length=150)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")

    def __str__(self) -> str:
        return f"{self.invoice_id} {self.channel} {self.status}"

    @property
    def format_list(self) -> list[str]:
        return [f for f in self.formats.split(",") if f]

    @property
    def masked_address(self) -> str:
        """The address as pages show it: enough to recognise, not enough to harvest."""
        text = self.address
        if "@" in text:
            name, domain = text.split("@", 1)
            return f"{name[:2]}***@{domain}"
        return f"{text[:3]}****{text[-4:]}" if len(text) > 7 else "****"


class DeliveryAttempt(models.Model):
    """One try to send a delivery (the delivery log). Invariant: append-only."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="log")
    attempted_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["attempted_at", "id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} {'ok' if self.ok else 'failed'}"


class DownloadCode(models.Model):
    """A one-time download link sent by SMS (一次性下载码).

    Invariants: only the SHA-256 of the code is stored; a code opens one download, before
    `expires_at`, and never again once `used_at` is set; sending a new code for the same delivery
    revokes the older unused ones (`revoked`).
    """

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_format = models.CharField(max_length=10, blank=True)
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"code of {self.delivery_id}"

    def is_usable(self, now: datetime) -> bool:
        return not self.revoked and self.used_at is None and now < self.expires_at
