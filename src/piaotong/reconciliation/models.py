"""Purchase reconciliation (进项核对): import jobs, their error reports, and reconciliation items.

An import job (导入任务) reads one uploaded file of purchase records (进项台账) or a supplier's
list (供应商清单) for one organisation, matches it against the invoices that organisation
received, and keeps the outcome as items. A refused import keeps only its issues.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import Organisation, User
from piaotong.invoices.models import Invoice
from piaotong.reconciliation.choices import ImportKind, ItemRule, ItemStatus, JobStatus
from piaotong.reconciliation.importing import Issue, Note


def _money(verbose_name: Any = None, **options: Any) -> models.DecimalField[Any, Any]:
    return models.DecimalField(verbose_name, max_digits=18, decimal_places=2, **options)


class ImportJob(models.Model):
    """One import of a file and its reconciliation.

    Invariants: items exist only when the status is done (they are written in the same
    transaction that marks it done), issues only when it failed; `rows_read <= rows_total` once
    reading has finished; an (idempotency principal, key) pair names at most one job.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    kind = models.CharField(
        _("kind"), max_length=20, choices=ImportKind.choices, default=ImportKind.PURCHASE_RECORDS
    )
    status = models.CharField(
        _("status"), max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED
    )
    file_name = models.CharField(_("file"), max_length=255)
    file_sha256 = models.CharField(max_length=64)
    file_size = models.PositiveBigIntegerField(default=0)
    # The uploaded copy under VAR_DIR, never served; removed once the job has finished.
    stored_path = models.CharField(max_length=500, blank=True)

    default_seller_tax_id = models.CharField(_("supplier tax id"), max_length=20, blank=True)
    per_line_tolerance = _money(_("rounding allowance per line"), default=Decimal("0.01"))
    per_invoice_tolerance = _money(_("rounding allowance per invoice"), default=Decimal("1.27"))
    date_window_days = models.PositiveSmallIntegerField(_("date window (days)"), default=10)

    rows_total = models.PositiveIntegerField(default=0)  # an estimate until reading ends
    rows_read = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    notes = models.JSONField(default=list, blank=True)  # [{"code": ..., "params": {...}}]
    summary = models.JSONField(default=dict, blank=True)  # {item status: count}
    period_from = models.DateField(null=True, blank=True)
    period_to = models.DateField(null=True, blank=True)

    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_by_label = models.CharField(max_length=150)
    idempotency_principal = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at"], name="recon_job_org")]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_principal", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="recon_job_idempotency",
            )
        ]
        verbose_name = _("import job")

    def __str__(self) -> str:
        return f"{self.file_name} ({self.status})"

    @property
    def is_running(self) -> bool:
        return self.status in JobStatus.running()

    @property
    def is_done(self) -> bool:
        return self.status == JobStatus.DONE

    @property
    def percent(self) -> int:
        if self.status == JobStatus.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(99, self.rows_read * 100 // self.rows_total)

    def note_messages(self) -> list[str]:
        """What was learned about the file (encoding, header row, formulas ...), in words."""
        return [Note(note["code"], note.get("params", {})).message() for note in self.notes]


class ImportIssue(models.Model):
    """One problem found in the file: a row and column (0 and "" for the whole file), a stable
    code, the offending value and parameters of the message (`importing.ISSUE_MESSAGES`)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="issues")
    row = models.PositiveIntegerField(default=0)
    column = models.CharField(max_length=100, blank=True)
    code = models.CharField(max_length=40)
    value = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["job", "row", "id"]

    def __str__(self) -> str:
        return f"{self.row}:{self.column}:{self.code}"

    def message(self) -> str:
        """What is wrong and how to fix it, in the active language."""
        return Issue(self.code, self.row, self.column, self.value, self.params).message()

    def location(self) -> str:
        return str(Issue(self.code, self.row, self.column).location())


class ReconciliationItem(models.Model):
    """One line of a reconciliation: a record with its invoice (a pair), a record without
    invoice (missing on the platform), or an invoice without record (missing in the books).

    Invariants: `row` is set exactly when the item holds a record, and then the record fields
    are as imported (normalised); an invoice is in at most one item of a job and a row in one;
    `rule` decided `status` (`matching.RULE_STATUS`); `diffs` lists the fields that differ as
    [field, book, platform, delta].
    """

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="items")
    row = models.PositiveIntegerField(null=True, blank=True)
    number = models.CharField(_("invoice number"), max_length=40, blank=True)
    invoice_key = models.CharField(max_length=40, blank=True)
    issue_date = models.DateField(_("issue date"), null=True, blank=True)
    seller_tax_id = models.CharField(_("seller tax id"), max_length=20, blank=True)
    seller_name = models.CharField(_("seller"), max_length=200, blank=True)
    amount = _money(_("amount"), null=True, blank=True)
    tax = _money(_("tax"), null=True, blank=True)
    total = _money(_("total with tax"), null=True, blank=True)

    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    status = models.CharField(_("status"), max_length=20, choices=ItemStatus.choices)
    rule = models.CharField(_("rule"), max_length=20, choices=ItemRule.choices)
    diffs = models.JSONField(default=list, blank=True)
    notes = models.JSONField(default=dict, blank=True)
    decided_by_label = models.CharField(max_length=150, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "row", "id"]
        indexes = [models.Index(fields=["job", "status"], name="recon_item_job_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "row"], condition=models.Q(row__isnull=False), name="recon_item_row"
            ),
            models.UniqueConstraint(
                fields=["job", "invoice"],
                condition=models.Q(invoice__isnull=False),
                name="recon_item_invoice",
            ),
            models.CheckConstraint(
                condition=models.Q(row__isnull=False) | models.Q(invoice__isnull=False),
                name="recon_item_has_record_or_invoice",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.row or '-'} {self.number} {self.status}"

    @property
    def has_record(self) -> bool:
        return self.row is not None

    @property
    def is_pair(self) -> bool:
        return self.row is not None and self.invoice_id is not None
