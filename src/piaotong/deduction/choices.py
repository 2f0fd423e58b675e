"""Choices of deduction (勾选抵扣): purposes, reasons for not deducting, period states.

Terms (china-einvoice.md §7): a *selection* (勾选) marks a received invoice for one tax period
(税款所属期, `YYYYMM`) with a purpose: deduct (抵扣) or not deduct (不抵扣, with a reason).
*Statistics* (申请统计) freeze the period's totals for review and can be revoked; *confirmation*
(确认签名) locks the period: its selections are then the confirmed use (用途确认) of the
invoices, a buyer-side fact the seller learns because it changes the red-letter rules (§6).
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.invoices.choices import SPECIAL_KINDS, InvoiceKind

# Only VAT special invoices (增值税专用发票: 数电专票 and 数电纸质专票) carry deductible input tax
# on their face. Real tax law also allows toll e-invoices (通行费电子普票) and passenger transport
# tickets; the platform issues neither kind, so they are not listed (china-einvoice.md §1.2, §7).
DEDUCTIBLE_KINDS: frozenset[str] = frozenset(SPECIAL_KINDS)
assert InvoiceKind.DIGITAL_SPECIAL in DEDUCTIBLE_KINDS


class Purpose(models.TextChoices):
    DEDUCT = "deduct", _("Deduct (抵扣)")
    NOT_DEDUCT = "not_deduct", _("Not deduct (不抵扣)")


class NonDeductionReason(models.TextChoices):
    """Why an invoice is selected as not deductible (不抵扣原因), codes as on the platform."""

    NON_TAXABLE = "1", _("1 Used for non-taxable items (用于非应税项目)")
    EXEMPT = "2", _("2 Used for exempt items (用于免税项目)")
    WELFARE = "3", _("3 Collective welfare or personal consumption (用于集体福利或者个人消费)")
    ABNORMAL_LOSS = "4", _("4 Abnormal loss (遭受非正常损失)")
    OTHER = "5", _("5 Other (其他)")


class PeriodStatus(models.TextChoices):
    """open -> counted (申请统计) -> confirmed (确认签名); counted -> open when statistics are
    revoked (撤销统计). Selections change only while open; confirmed is final."""

    OPEN = "open", _("Open for selection (可勾选)")
    COUNTED = "counted", _("Statistics applied (已申请统计)")
    CONFIRMED = "confirmed", _("Confirmed (已确认签名)")


class BuyerUsage(models.TextChoices):
    """The strongest buyer-side use of an invoice on this node (see queries.buyer_usage)."""

    NONE = "", _("Not used")
    BOOKED = "booked", _("Booked (已入账)")
    SELECTED = "selected", _("Selected (已勾选)")
    CONFIRMED = "confirmed", _("Use confirmed (已确认用途)")


class DeductionState(models.TextChoices):
    """Filter values of the received-invoice list."""

    UNSELECTED = "unselected", _("Not selected")
    SELECTED = "selected", _("Selected, period open")
    COUNTED = "counted", _("Selected, statistics applied")
    CONFIRMED = "confirmed", _("Confirmed")
    NOT_DEDUCT = "not_deduct", _("Selected as not deductible")
