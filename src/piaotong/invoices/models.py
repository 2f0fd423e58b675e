"""Invoices (发票), their lines (明细行), number sequences (赋码序列) and quota usage.

Seller and buyer details are copied onto the invoice when it is drafted: an invoice states the
facts as they were when it was issued, whatever later happens to the organisation's record.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.core.validators import validate_email
from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import ApiKey, Organisation, User
from piaotong.fields import EncryptedTextField
from piaotong.invoices.choices import (
    PAPER_KINDS,
    SPECIAL_KINDS,
    AuthorityFlag,
    BuyerKind,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
    RedLetterReason,
    RedLetterSide,
    RedLetterStatus,
    can_transition,
    red_letter_platform_code,
    status_mark,
)
from piaotong.lib.money import RATES


def money_field(verbose_name: Any = None, **options: Any) -> models.DecimalField[Any, Any]:
    """NUMERIC(18,2): every amount and tax."""
    return models.DecimalField(verbose_name, max_digits=18, decimal_places=2, **options)


def fine_field(verbose_name: Any = None, **options: Any) -> models.DecimalField[Any, Any]:
    """Quantities and unit prices: 13 decimal places, and at most 15 significant digits (checked
    in lib.money) so values round-trip exactly through SQLite's REAL storage as through NUMERIC."""
    return models.DecimalField(verbose_name, max_digits=28, decimal_places=13, **options)


class InvoiceQuerySet(models.QuerySet["Invoice"]):
    def visible_to(self, organisation_ids: list[int]) -> InvoiceQuerySet:
        """Invoices where one of the organisations is the seller or the buyer."""
        return self.filter(
            models.Q(seller_id__in=organisation_ids) | models.Q(buyer_id__in=organisation_ids)
        )


class Invoice(models.Model):
    """One invoice.

    Invariants: `number` is set exactly when the status leaves draft/pending review, and is unique;
    totals equal the sums of the lines; `signature` covers the canonical payload of an issued
    invoice; issued content never changes (later facts are new ledger events and status moves).
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(_("kind"), max_length=20, choices=InvoiceKind.choices)
    status = models.CharField(
        _("status"), max_length=30, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT
    )
    number = models.CharField(
        _("invoice number"), max_length=20, unique=True, null=True, blank=True
    )
    issue_date = models.DateField(_("issue date"), null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)

    # Foreign keys without their own index are covered by a composite index or never filtered
    # on (users are deactivated, not deleted): every index is paid for on the issuing hot path.
    seller = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="sales", db_index=False
    )
    seller_name = models.CharField(max_length=200)
    seller_tax_id = models.CharField(max_length=20)
    seller_address = models.CharField(max_length=300, blank=True)
    seller_bank = models.CharField(max_length=300, blank=True)

    buyer = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="purchases",
        db_index=False,
    )
    buyer_kind = models.CharField(
        max_length=20, choices=BuyerKind.choices, default=BuyerKind.ORGANISATION
    )
    buyer_name = models.CharField(_("buyer name"), max_length=200)
    buyer_tax_id = models.CharField(_("buyer tax id"), max_length=20, blank=True)
    buyer_address = models.CharField(max_length=300, blank=True)
    buyer_bank = models.CharField(max_length=300, blank=True)
    # Contact details of the buyer (for natural persons, personal data) are stored encrypted;
    # the printed facts above (names, tax ids, addresses, banks) are signed and stay plain.
    buyer_email = EncryptedTextField(max_length=254, blank=True, validators=[validate_email])
    buyer_phone = EncryptedTextField(max_length=20, blank=True)

    total_amount = money_field(_("total amount"), default=Decimal("0.00"))
    total_tax = money_field(_("total tax"), default=Decimal("0.00"))
    total_with_tax = money_field(_("total with tax"), default=Decimal("0.00"))
    remarks = models.CharField(_("remarks"), max_length=500, blank=True)

    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_by_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_by_label = models.CharField(max_length=150)
    issuer_name = models.CharField(_("issuer"), max_length=150, blank=True)
    reviewed_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    reviewer_name = models.CharField(max_length=150, blank=True)
    review_note = models.CharField(max_length=500, blank=True)

    # A red-letter invoice (红字发票) reverses part or all of the blue invoice it points at; its
    # amounts are negative. Blue invoices have no `red_of`.
    red_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="red_invoices",
        db_index=False,
        verbose_name=_("red-letter invoice of"),
    )
    voided_at = models.DateTimeField(null=True, blank=True)
    # Written only by the authority (the hub): 失控 / 异常.
    authority_flag = models.CharField(
        _("authority flag"), max_length=20, choices=AuthorityFlag.choices, blank=True, default=""
    )
    flagged_at = models.DateTimeField(null=True, blank=True)

    signing_key_id = models.CharField(max_length=32, blank=True)
    signature = models.CharField(max_length=120, blank=True)
    payload_hash = models.CharField(max_length=64, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["seller", "-issue_date"], name="invoice_seller_date"),
            models.Index(fields=["buyer", "-issue_date"], name="invoice_buyer_date"),
            models.Index(
                fields=["red_of"],
                name="invoice_red_of",
                condition=models.Q(red_of__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(number__isnull=True)
                | ~models.Q(status__in=[InvoiceStatus.DRAFT, InvoiceStatus.PENDING_REVIEW]),
                name="invoice_draft_has_no_number",
            ),
        ]
        verbose_name = _("invoice")

    def __str__(self) -> str:
        return self.number or f"draft {self.uid}"

    @property
    def stream(self) -> str:
        """The ledger stream of this invoice."""
        return f"invoice:{self.uid}"

    @property
    def is_red(self) -> bool:
        return self.red_of_id is not None

    @property
    def status_mark(self) -> tuple[str, str]:
        """(zh, en) as verification prints it: 正常/作废/部分红冲/全额红冲/失控/异常."""
        return status_mark(self.status, self.authority_flag)

    @property
    def is_special(self) -> bool:
        return self.kind in SPECIAL_KINDS

    @property
    def is_paper(self) -> bool:
        return self.kind in PAPER_KINDS

    @property
    def is_draft(self) -> bool:
        return self.status in {InvoiceStatus.DRAFT, InvoiceStatus.PENDING_REVIEW}

    def can_transition_to(self, target: InvoiceStatus) -> bool:
        return can_transition(self.kind, self.status, target)

    def can_be_voided(self) -> bool:
        return self.can_transition_to(InvoiceStatus.VOIDED)


class InvoiceLine(models.Model):
    """One line (明细行). Invariants: amount and tax are 2-dp; `printed_name` is *简称*品名."""

    invoice = models.ForeignKey(
        Invoice, on_delete=models.CASCADE, related_name="lines", db_index=False
    )  # covered by the (invoice, position) unique index
    position = models.PositiveSmallIntegerField()
    kind = models.PositiveSmallIntegerField(choices=LineKind.choices, default=LineKind.NORMAL)
    tax_code = models.CharField(_("tax classification code"), max_length=19)
    item_name = models.CharField(_("item name"), max_length=200)
    printed_name = models.CharField(max_length=240)
    spec = models.CharField(_("specification"), max_length=100, blank=True)
    unit = models.CharField(_("unit"), max_length=20, blank=True)
    quantity = fine_field(_("quantity"), null=True, blank=True)
    unit_price = fine_field(_("unit price"), null=True, blank=True)
    amount = money_field(_("amount"))
    tax_rate = models.CharField(_("tax rate"), max_length=12)
    tax = money_field(_("tax"))

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "position"], name="invoice_line_position_unique"
            )
        ]

    def __str__(self) -> str:
        return self.printed_name

    @property
    def rate_label(self) -> str:
        rate = RATES.get(self.tax_rate)
        return rate.label_zh if rate else self.tax_rate


class NumberSequence(models.Model):
    """The last number assigned per (year, region, channel).

    Invariant: numbers of committed invoices for a key are exactly 1..last_value, because the
    row is locked and bumped in the issuing transaction; a rollback gives the number back.
    """

    year = models.PositiveSmallIntegerField()
    region = models.CharField(max_length=2)
    channel = models.CharField(max_length=1)
    last_value = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["year", "region", "channel"], name="number_sequence_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.year}/{self.region}/{self.channel}: {self.last_value}"


class QuotaUsage(models.Model):
    """Pre-tax amounts issued per organisation and calendar month (Asia/Shanghai), for 授信额度."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="+", db_index=False
    )  # covered by the (organisation, period) unique index
    period = models.CharField(max_length=6)  # YYYYMM
    used = money_field(default=Decimal("0.00"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "period"], name="quota_usage_period")
        ]

    def __str__(self) -> str:
        return f"{self.organisation_id} {self.period}: {self.used}"


class RedLetterConfirmation(models.Model):
    """A red-letter information confirmation (红字发票信息确认单): one party's request to reverse
    all or part of a blue invoice, the counterparty's answer, and the red invoice it led to.

    Invariants: `lines` reverse positions of the blue invoice with negative amount and tax, and
    the totals are their sums; together with the other open or issued confirmations of the same
    blue invoice they never exceed its lines (no over-reversal). `red_invoice` is set only in
    status issued, on the seller's home node. A request that needs no confirmation (无需确认)
    was filed by the seller, in full, before the buyer booked or confirmed use of the invoice.
    Answers come only from the counterparty, before `expires_at` (72 hours after filing).
    `uid` is the same on every node that holds the request.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    blue_invoice = models.ForeignKey(
        Invoice,
        on_delete=models.PROTECT,
        related_name="red_letter_confirmations",
        verbose_name=_("blue invoice"),
    )
    initiator_side = models.CharField(
        _("initiated by"), max_length=10, choices=RedLetterSide.choices
    )
    initiator = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    initiator_name = models.CharField(max_length=200)
    reason = models.CharField(_("reason"), max_length=2, choices=RedLetterReason.choices)
    is_full = models.BooleanField(_("full reversal"), default=True)
    lines = models.JSONField(default=list)  # [{"position", "amount", "tax", "quantity"}]
    total_amount = money_field(_("total amount"))
    total_tax = money_field(_("total tax"))
    total_with_tax = money_field(_("total with tax"))
    status = models.CharField(
        _("status"), max_length=30, choices=RedLetterStatus.choices, default=RedLetterStatus.PENDING
    )
    confirmation_required = models.BooleanField(default=True)

    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    requested_by_label = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    answered_by_label = models.CharField(max_length=150, blank=True)
    refusal_reason = models.CharField(_("reason for refusing"), max_length=500, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    red_invoice = models.OneToOneField(
        Invoice,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="red_letter_confirmation",
    )
    red_number = models.CharField(max_length=20, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="red_letter_pending_expiry",
                condition=models.Q(status="pending"),
            ),
        ]
        verbose_name = _("red-letter confirmation")

    def __str__(self) -> str:
        return f"确认单 {self.uid} ({self.status})"

    @property
    def counterparty_side(self) -> RedLetterSide:
        if self.initiator_side == RedLetterSide.SELLER:
            return RedLetterSide.BUYER
        return RedLetterSide.SELLER

    @property
    def platform_code(self) -> str:
        return red_letter_platform_code(
            self.status, self.initiator_side, self.confirmation_required
        )

    @property
    def is_pending(self) -> bool:
        return self.status == RedLetterStatus.PENDING


class ExportJob(models.Model):
    """A large export (导出任务) built in the background: the filtered invoice list as an Excel
    workbook, optionally zipped with the PDF of every invoice.

    Invariants: only its requester downloads it; `rows_done <= rows_total`; the file exists
    exactly while status is done and it has not expired; a job whose heartbeat stopped is
    reported as stalled and can be started again.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued (排队中)")
        RUNNING = "running", _("Running (进行中)")
        DONE = "done", _("Ready (已完成)")
        FAILED = "failed", _("Failed (失败)")

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    requested_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    organisation_ids = models.JSONField(default=list)
    filters = models.JSONField(default=dict)
    with_documents = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("export job")

    def __str__(self) -> str:
        return f"export {self.uid}"

    @property
    def percent(self) -> int:
        if not self.rows_total:
            return 100 if self.status == self.Status.DONE else 0
        return min(100, self.rows_done * 100 // self.rows_total)
