"""Invoice kinds (票种), statuses (状态) and their allowed transitions.

A blue invoice (蓝字发票) is an ordinary positive invoice; it is reversed by a red-letter
invoice (红字发票), never deleted. Only paper kinds can be voided (作废); 数电票 cannot.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class InvoiceKind(models.TextChoices):
    DIGITAL_SPECIAL = "digital_special", _("Digital special VAT invoice (数电专票)")
    DIGITAL_ORDINARY = "digital_ordinary", _("Digital ordinary invoice (数电普票)")
    PAPER_SPECIAL = "paper_special", _("Digital paper special invoice (数电纸质专票)")
    PAPER_ORDINARY = "paper_ordinary", _("Digital paper ordinary invoice (数电纸质普票)")


PAPER_KINDS = frozenset({InvoiceKind.PAPER_SPECIAL, InvoiceKind.PAPER_ORDINARY})
SPECIAL_KINDS = frozenset({InvoiceKind.DIGITAL_SPECIAL, InvoiceKind.PAPER_SPECIAL})
# The 票种 codes of the tax platforms' APIs, for interchange.
PLATFORM_CODES = {
    InvoiceKind.DIGITAL_SPECIAL: "81",
    InvoiceKind.DIGITAL_ORDINARY: "82",
    InvoiceKind.PAPER_SPECIAL: "85",
    InvoiceKind.PAPER_ORDINARY: "86",
}


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", _("Draft (草稿)")
    PENDING_REVIEW = "pending_review", _("Pending review (待复核)")
    ISSUED = "issued", _("Issued (正常)")
    PARTIALLY_RED_FLUSHED = "partially_red_flushed", _("Partially red-flushed (部分红冲)")
    FULLY_RED_FLUSHED = "fully_red_flushed", _("Fully red-flushed (全额红冲)")
    VOIDED = "voided", _("Voided (作废)")


S = InvoiceStatus
TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    S.DRAFT: frozenset({S.PENDING_REVIEW, S.ISSUED}),
    S.PENDING_REVIEW: frozenset({S.ISSUED, S.DRAFT}),
    S.ISSUED: frozenset({S.PARTIALLY_RED_FLUSHED, S.FULLY_RED_FLUSHED, S.VOIDED}),
    S.PARTIALLY_RED_FLUSHED: frozenset({S.PARTIALLY_RED_FLUSHED, S.FULLY_RED_FLUSHED}),
    S.FULLY_RED_FLUSHED: frozenset(),
    S.VOIDED: frozenset(),
}


def can_transition(kind: str, current: str, target: str) -> bool:
    """Whether an invoice of `kind` may move from `current` to `target`.

    >>> can_transition("digital_ordinary", "issued", "voided")
    False
    >>> can_transition("paper_ordinary", "issued", "voided")
    True
    >>> can_transition("digital_special", "draft", "fully_red_flushed")
    False
    """
    if target == S.VOIDED and kind not in PAPER_KINDS:
        return False
    return InvoiceStatus(target) in TRANSITIONS[InvoiceStatus(current)]


class AuthorityFlag(models.TextChoices):
    """Flags set by the tax authority (the hub) only; they override the status mark."""

    NONE = "", _("None")
    OUT_OF_CONTROL = "out_of_control", _("Out of control (失控)")
    ABNORMAL = "abnormal", _("Abnormal (异常)")


# The status marks (状态标志) of verification results, in the words the real platform prints.
STATUS_MARKS: dict[str, tuple[str, str]] = {
    InvoiceStatus.ISSUED: ("正常", "Normal"),
    InvoiceStatus.VOIDED: ("作废", "Voided"),
    InvoiceStatus.PARTIALLY_RED_FLUSHED: ("部分红冲", "Partially red-flushed"),
    InvoiceStatus.FULLY_RED_FLUSHED: ("全额红冲", "Fully red-flushed"),
    AuthorityFlag.OUT_OF_CONTROL: ("失控", "Out of control"),
    AuthorityFlag.ABNORMAL: ("异常", "Abnormal"),
}


def status_mark(status: str, authority_flag: str = "") -> tuple[str, str]:
    """The (zh, en) status mark of an issued invoice: an authority flag wins over the status.

    >>> status_mark("issued")
    ('正常', 'Normal')
    >>> status_mark("partially_red_flushed", "abnormal")
    ('异常', 'Abnormal')
    """
    return STATUS_MARKS[authority_flag or status]


class BuyerKind(models.TextChoices):
    ORGANISATION = "organisation", _("Organisation (单位)")
    PERSON = "person", _("Natural person (自然人)")


class LineKind(models.IntegerChoices):
    NORMAL = 0, _("Normal line")
    DISCOUNT = 1, _("Discount line (折扣行)")
    DISCOUNTED = 2, _("Discounted line (被折扣行)")
