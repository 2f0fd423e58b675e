"""Choices of the VAT return (增值税申报)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class ReturnStatus(models.TextChoices):
    """draft -> submitted; a submitted version becomes superseded when its amendment
    (更正申报, the next version) is submitted."""

    DRAFT = "draft", _("Draft (草稿)")
    SUBMITTED = "submitted", _("Submitted (已申报)")
    SUPERSEDED = "superseded", _("Superseded by an amendment (已更正)")


class DrillPart(models.TextChoices):
    """The invoice sets behind the numbers of a return."""

    OUTPUT = "output", _("Issued invoices (销项发票)")
    INPUT = "input", _("Confirmed deductions (已确认抵扣的进项发票)")
    TRANSFER_OUT = "transfer_out", _("Red-letter invoices received against deducted invoices")
    VOIDED = "voided", _("Voided invoices, not counted (作废发票)")
