"""VAT returns (增值税申报表): one row per version of one organisation's return for one period."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import Organisation
from piaotong.filing.choices import ReturnStatus
from piaotong.invoices.models import money_field


class VatReturn(models.Model):
    """One version of an organisation's VAT return for a period (`YYYYMM` or `YYYYQn`).

    Invariants: versions of a (organisation, period) are numbered 1, 2, ...; at most one of them
    is a draft (database constraint); a version is created as a draft, and version n > 1 (an
    amendment, 更正申报) only after version n-1 was submitted; a submitted version's numbers and
    `content_hash` never change; when version n is submitted, version n-1 becomes superseded, so
    at most one version is `submitted`: the return in force. `numbers` holds the computation
    (`compute.ReturnResult.as_json()` plus the output and input groups) with decimals as strings;
    the money columns repeat its main lines for queries (the next period's credit brought forward).
    """

    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    period = models.CharField(_("period"), max_length=7)
    version = models.PositiveSmallIntegerField(_("version"))
    status = models.CharField(
        _("status"), max_length=12, choices=ReturnStatus.choices, default=ReturnStatus.DRAFT
    )
    taxpayer_kind = models.CharField(max_length=20)
    numbers = models.JSONField(default=dict)
    payable = money_field(_("tax payable"))
    credit_carried_forward = money_field(_("credit carried forward"))
    amendment_reason = models.CharField(_("reason for the amendment"), max_length=500, blank=True)
    prepared_at = models.DateTimeField()
    prepared_by_label = models.CharField(max_length=150)
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_by_label = models.CharField(max_length=150, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["organisation", "-period", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "period", "version"], name="vat_return_version"
            ),
            models.UniqueConstraint(
                fields=["organisation", "period"],
                condition=Q(status=ReturnStatus.DRAFT),
                name="vat_return_one_draft",
            ),
        ]
        verbose_name = _("VAT return")

    def __str__(self) -> str:
        return f"{self.organisation_id} {self.period} v{self.version} {self.status}"

    @property
    def target(self) -> str:
        """The audit target of this return's history."""
        return f"vat-return:{self.organisation_id}:{self.period}"

    @property
    def is_draft(self) -> bool:
        return self.status == ReturnStatus.DRAFT

    @property
    def is_submitted(self) -> bool:
        return self.status == ReturnStatus.SUBMITTED
