"""Kinds of import, states of an import job, and the statuses and rules of reconciliation items."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.reconciliation.matching import Rule, Status


class ImportKind(models.TextChoices):
    PURCHASE_RECORDS = "purchase_records", _("Purchase records (进项台账)")
    SUPPLIER_LIST = "supplier_list", _("Supplier list (供应商清单)")


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    READING = "reading", _("Reading the file")
    MATCHING = "matching", _("Matching")
    STORING = "storing", _("Saving the results")
    DONE = "done", _("Done")
    FAILED = "failed", _("Refused")

    @classmethod
    def running(cls) -> frozenset[str]:
        return frozenset({cls.QUEUED, cls.READING, cls.MATCHING, cls.STORING})


class ItemStatus(models.TextChoices):
    EXACT = Status.EXACT.value, _("Exact match")
    SUGGESTED = Status.SUGGESTED.value, _("Suggested match")
    MISMATCH = Status.MISMATCH.value, _("Mismatch")
    MANUAL = Status.MANUAL.value, _("Matched by hand")
    MISSING_IN_BOOKS = Status.MISSING_IN_BOOKS.value, _("Missing in books")
    MISSING_ON_PLATFORM = Status.MISSING_ON_PLATFORM.value, _("Missing on platform")


# Pairs whose invoice may be selected for deduction: decided by the exact rules or by a person.
CONFIRMED_STATUSES = frozenset({ItemStatus.EXACT, ItemStatus.MANUAL})


class ItemRule(models.TextChoices):
    EXACT = Rule.EXACT.value, _("exact")
    NUMBER_NORMALISED = Rule.NUMBER_NORMALISED.value, _("number normalised")
    ROUNDING = Rule.ROUNDING.value, _("rounding")
    DATE_WINDOW = Rule.DATE_WINDOW.value, _("date window")
    FUZZY_NUMBER = Rule.FUZZY_NUMBER.value, _("fuzzy number")
    LEGAL_ENTITY = Rule.LEGAL_ENTITY.value, _("legal entity")
    LEGAL_ENTITY_FUZZY = Rule.LEGAL_ENTITY_FUZZY.value, _("legal entity, fuzzy number")
    MISMATCH = Rule.MISMATCH.value, _("mismatch")
    MANUAL = Rule.MANUAL.value, _("manual")
    NO_INVOICE = Rule.NO_INVOICE.value, _("no invoice")
    NO_RECORD = Rule.NO_RECORD.value, _("no record")
