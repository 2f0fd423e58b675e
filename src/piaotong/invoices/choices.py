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


class RedLetterReason(models.TextChoices):
    """Why an invoice is reversed (红冲原因), with the platform codes (china-einvoice.md §6)."""

    INVOICING_ERROR = "01", _("Invoicing error (开票有误)")
    SALES_RETURN = "02", _("Sales return (销货退回)")
    SERVICE_TERMINATED = "03", _("Service terminated (服务终止)")
    SALES_ALLOWANCE = "04", _("Sales allowance (销售折让)")


# Partial reversal (部分红冲) only for returns and allowances; the other reasons reverse in full.
PARTIAL_REASONS = frozenset({RedLetterReason.SALES_RETURN, RedLetterReason.SALES_ALLOWANCE})


class RedLetterSide(models.TextChoices):
    """Which party files or answers a 红字发票信息确认单."""

    SELLER = "seller", _("Seller (销方)")
    BUYER = "buyer", _("Buyer (购方)")


class RedLetterStatus(models.TextChoices):
    """States of a 确认单. The platform's codes 01-08 follow from (status, initiator side)."""

    NO_CONFIRMATION_NEEDED = "no_confirmation_needed", _("No confirmation needed (无需确认)")
    PENDING = "pending", _("Awaiting the counterparty (待对方确认)")
    CONFIRMED = "confirmed", _("Confirmed by both parties (购销双方已确认)")
    REFUSED = "refused", _("Refused by the counterparty (对方已拒绝)")
    EXPIRED = "expired", _("Not confirmed within 72 hours (超时作废)")
    WITHDRAWN = "withdrawn", _("Withdrawn by the initiator (发起方已撤销)")
    ISSUED = "issued", _("Red invoice issued (已开具红字发票)")


RL = RedLetterStatus
# Requests that still hold part of the blue invoice's amount: it cannot be requested twice.
OPEN_RED_LETTER = frozenset({RL.PENDING, RL.CONFIRMED, RL.NO_CONFIRMATION_NEEDED})
RESERVING_RED_LETTER = OPEN_RED_LETTER | {RL.ISSUED}
RED_LETTER_TRANSITIONS: dict[RedLetterStatus, frozenset[RedLetterStatus]] = {
    RL.PENDING: frozenset({RL.CONFIRMED, RL.REFUSED, RL.EXPIRED, RL.WITHDRAWN}),
    RL.CONFIRMED: frozenset({RL.ISSUED, RL.REFUSED, RL.EXPIRED, RL.WITHDRAWN}),
    RL.NO_CONFIRMATION_NEEDED: frozenset({RL.ISSUED}),
    RL.REFUSED: frozenset(),
    RL.EXPIRED: frozenset(),
    RL.WITHDRAWN: frozenset(),
    RL.ISSUED: frozenset(),
}


def red_letter_platform_code(status: str, initiator_side: str, confirmation_required: bool) -> str:
    """The 确认单 state code of the tax platforms (china-einvoice.md §6).

    >>> red_letter_platform_code("pending", "seller", True), red_letter_platform_code("pending", "buyer", True)
    ('02', '03')
    >>> red_letter_platform_code("issued", "seller", False), red_letter_platform_code("issued", "buyer", True)
    ('01', '04')
    >>> red_letter_platform_code("refused", "buyer", True), red_letter_platform_code("expired", "seller", True)
    ('06', '07')
    """
    if not confirmation_required:
        return "01"
    seller = initiator_side == RedLetterSide.SELLER
    return {
        RL.PENDING: "02" if seller else "03",
        RL.CONFIRMED: "04",
        RL.ISSUED: "04",
        RL.REFUSED: "05" if seller else "06",
        RL.EXPIRED: "07",
        RL.WITHDRAWN: "08",
    }.get(RedLetterStatus(status), "01")
