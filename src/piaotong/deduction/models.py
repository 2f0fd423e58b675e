"""Buyer-side facts about received invoices (进项): booking (入账确认), deduction periods and
selections (勾选). All of them are written only on the buyer's node (ARCHITECTURE §5)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import Organisation
from piaotong.deduction.choices import NonDeductionReason, PeriodStatus, Purpose
from piaotong.invoices.models import Invoice, money_field


class Booking(models.Model):
    """入账确认: the buyer recorded a received invoice in its books.

    Invariants: at most one per invoice; `buyer` is the invoice's buyer; never changed once made
    (booking is a use of the invoice: after it the seller needs the buyer's consent to reverse).
    """

    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, related_name="booking")
    buyer = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    booked_at = models.DateTimeField(_("booked at"))
    booked_by_label = models.CharField(_("booked by"), max_length=150)

    class Meta:
        indexes = [models.Index(fields=["buyer", "booked_at"], name="booking_buyer")]
        verbose_name = _("booking")

    def __str__(self) -> str:
        return f"booked {self.invoice_id}"


class DeductionPeriod(models.Model):
    """One buyer's deduction period (税款所属期) `YYYYMM`.

    Invariants: one row per (buyer, period); status moves open -> counted -> confirmed, or
    counted -> open when statistics are revoked; its selections change only while open;
    `statistics` is the snapshot taken by 申请统计 and is kept at confirmation; confirmed is
    final. `closed_by_return` marks a period confirmed because its VAT return was submitted
    without any selection in it.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    buyer = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    period = models.CharField(_("period"), max_length=6)
    status = models.CharField(
        _("status"), max_length=12, choices=PeriodStatus.choices, default=PeriodStatus.OPEN
    )
    statistics = models.JSONField(default=dict, blank=True)
    counted_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirmed_by_label = models.CharField(max_length=150, blank=True)
    closed_by_return = models.BooleanField(default=False)

    class Meta:
        ordering = ["-period"]
        constraints = [
            models.UniqueConstraint(fields=["buyer", "period"], name="deduction_period_unique")
        ]
        verbose_name = _("deduction period")

    def __str__(self) -> str:
        return f"{self.buyer_id} {self.period} {self.status}"

    @property
    def stream(self) -> str:
        """The ledger stream of period-level facts (statistics applied and revoked)."""
        return f"deduction-period:{self.uid}"

    @property
    def is_open(self) -> bool:
        return self.status == PeriodStatus.OPEN

    @property
    def is_confirmed(self) -> bool:
        return self.status == PeriodStatus.CONFIRMED


class DeductionSelection(models.Model):
    """勾选: one received invoice selected in one period with a purpose.

    Invariants: at most one active (not revoked) selection per invoice, whatever the period
    (database constraint); 0 <= effective_tax <= face_tax; a not-deduct selection has a reason
    and an effective tax of 0; face values are the invoice's remaining amount and tax when it
    was selected (after partial red-letter reversals). Revoked selections are kept as history.
    """

    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, related_name="deduction_selections", db_index=False
    )
    deduction_period = models.ForeignKey(
        DeductionPeriod, on_delete=models.PROTECT, related_name="selections"
    )
    purpose = models.CharField(_("purpose"), max_length=12, choices=Purpose.choices)
    reason = models.CharField(
        _("reason"), max_length=2, choices=NonDeductionReason.choices, blank=True
    )
    face_amount = money_field(_("face amount"))
    face_tax = money_field(_("face tax"))
    effective_tax = money_field(_("effective tax"), default=Decimal("0.00"))
    selected_at = models.DateTimeField(_("selected at"))
    selected_by_label = models.CharField(max_length=150)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["selected_at", "id"]
        indexes = [models.Index(fields=["invoice", "-selected_at"], name="selection_invoice")]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(revoked_at__isnull=True),
                name="selection_one_active_per_invoice",
            ),
            models.CheckConstraint(
                condition=Q(effective_tax__gte=0) & Q(effective_tax__lte=F("face_tax")),
                name="selection_effective_within_face",
            ),
            models.CheckConstraint(
                condition=Q(purpose=Purpose.DEDUCT, reason="")
                | (Q(purpose=Purpose.NOT_DEDUCT, effective_tax=0) & ~Q(reason="")),
                name="selection_reason_matches_purpose",
            ),
        ]
        verbose_name = _("deduction selection")

    def __str__(self) -> str:
        return f"{self.invoice_id} in {self.deduction_period_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
