"""Pure rules of selection (勾选) and statistics (申请统计), over dataclasses, no database.

A *candidate* is what the rules need to know about one received invoice at the moment it is
selected: its kind, status mark, whether it is red, its remaining face amount and tax (after
partial red-letter reversals), its issue period and the period it is already selected in.
The *face tax* (票面税额) is the most that can be deducted; the *effective tax* (有效抵扣税额)
is what the buyer deducts, possibly less (china-einvoice.md §7).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.utils.translation import gettext_lazy as _

from piaotong.deduction.choices import DEDUCTIBLE_KINDS, NonDeductionReason, Purpose
from piaotong.invoices.choices import AuthorityFlag, InvoiceStatus
from piaotong.lib.errors import RuleViolation

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Candidate:
    """One received invoice as the selection rules see it."""

    number: str
    kind: str
    status: str
    authority_flag: str
    is_red: bool
    face_amount: Decimal
    face_tax: Decimal
    issue_period: str
    selected_in: str = ""  # the period of an active selection, "" if none


@dataclass(frozen=True)
class Choice:
    """What the buyer asks for one invoice."""

    deduct: bool = True
    effective_tax: Decimal | None = None
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    """What will be recorded for one invoice."""

    purpose: Purpose
    reason: str
    face_amount: Decimal
    face_tax: Decimal
    effective_tax: Decimal


def check_selectable(candidate: Candidate, period: str) -> list[RuleViolation]:
    """Why the invoice cannot be selected into `period` (empty when it can)."""
    found = [
        _kind_violation(candidate),
        _status_violation(candidate),
        _period_violation(candidate, period),
        _already_selected_violation(candidate, period),
    ]
    return [violation for violation in found if violation is not None]


def _kind_violation(candidate: Candidate) -> RuleViolation | None:
    if candidate.is_red:
        return RuleViolation(
            "invoice",
            "red_invoice",
            _(
                "%(number)s is a red-letter invoice: red invoices are not selected; the return "
                "transfers out the input tax they reverse."
            ),
            {"number": candidate.number},
        )
    if candidate.kind not in DEDUCTIBLE_KINDS:
        return RuleViolation(
            "invoice",
            "not_deductible_kind",
            _(
                "%(number)s is an ordinary invoice: only VAT special invoices (专票) carry "
                "deductible input tax. Ask the seller for a special invoice."
            ),
            {"number": candidate.number},
        )
    return None


# Status marks that forbid selection, with the reason printed for each (§7: a buyer must re-check
# an invoice before selecting it, since it may have become 作废/红冲/异常 after receipt).
_BLOCKING_FLAGS = {
    AuthorityFlag.ABNORMAL: _(
        "%(number)s is flagged abnormal (异常) by the tax authority and cannot be selected "
        "until the flag is lifted."
    ),
    AuthorityFlag.OUT_OF_CONTROL: _(
        "%(number)s is flagged out of control (失控) by the tax authority and cannot be selected."
    ),
}
_BLOCKING_STATUSES = {
    InvoiceStatus.VOIDED: _("%(number)s was voided (作废) and cannot be selected."),
    InvoiceStatus.FULLY_RED_FLUSHED: _(
        "%(number)s was fully reversed by a red-letter invoice (全额红冲): nothing is left to deduct."
    ),
}


def _status_violation(candidate: Candidate) -> RuleViolation | None:
    params = {"number": candidate.number}
    if candidate.authority_flag in _BLOCKING_FLAGS:
        return RuleViolation(
            "invoice", "flagged", _BLOCKING_FLAGS[AuthorityFlag(candidate.authority_flag)], params
        )
    if candidate.status in _BLOCKING_STATUSES:
        return RuleViolation(
            "invoice", "status", _BLOCKING_STATUSES[InvoiceStatus(candidate.status)], params
        )
    if candidate.status not in {InvoiceStatus.ISSUED, InvoiceStatus.PARTIALLY_RED_FLUSHED}:
        return RuleViolation("invoice", "status", _("%(number)s is not an issued invoice."), params)
    return None


def _period_violation(candidate: Candidate, period: str) -> RuleViolation | None:
    if candidate.issue_period > period:
        return RuleViolation(
            "invoice",
            "issued_after_period",
            _(
                "%(number)s was issued in %(issued)s, after period %(period)s: select it in "
                "%(issued)s or later."
            ),
            {"number": candidate.number, "issued": candidate.issue_period, "period": period},
        )
    return None


def _already_selected_violation(candidate: Candidate, period: str) -> RuleViolation | None:
    if not candidate.selected_in:
        return None
    if candidate.selected_in == period:
        message = _(
            "%(number)s is already selected in this period; revoke that selection first to "
            "change it."
        )
    else:
        message = _(
            "%(number)s is already selected in period %(other)s; an invoice is selected in one "
            "period only (revoke it there first if that period is still open)."
        )
    return RuleViolation(
        "invoice",
        "already_selected",
        message,
        {"number": candidate.number, "other": candidate.selected_in},
    )


def decide(candidate: Candidate, choice: Choice) -> Decision:
    """The purpose, reason and taxes to record, or a RuleViolation about the choice."""
    if not choice.deduct:
        return Decision(
            Purpose.NOT_DEDUCT,
            _check_reason(choice.reason),
            candidate.face_amount,
            candidate.face_tax,
            ZERO,
        )
    effective = candidate.face_tax if choice.effective_tax is None else choice.effective_tax
    _check_effective_tax(effective, candidate.face_tax)
    return Decision(
        Purpose.DEDUCT, "", candidate.face_amount, candidate.face_tax, effective.quantize(ZERO)
    )


def _check_reason(reason: str) -> str:
    code = reason.strip()
    if code not in NonDeductionReason.values:
        raise RuleViolation(
            "reason",
            "reason_required",
            _(
                "Say why the invoice is not deducted: reason 1 non-taxable items, 2 exempt items, "
                "3 collective welfare or personal consumption, 4 abnormal loss, 5 other."
            ),
        )
    return code


def _check_effective_tax(effective: Decimal, face_tax: Decimal) -> None:
    if not effective.is_finite() or effective != effective.quantize(ZERO):
        raise RuleViolation(
            "effective_tax",
            "bad_amount",
            _("The effective tax is an amount in yuan with at most two decimals, e.g. 130.00."),
        )
    if effective < 0 or effective > face_tax:
        raise RuleViolation(
            "effective_tax",
            "effective_tax_out_of_range",
            _(
                "The effective tax %(effective)s must be between 0.00 and the invoice's face tax "
                "%(face)s: a buyer never deducts more than the invoice states."
            ),
            {"effective": effective, "face": face_tax},
        )


# --- Statistics (申请统计) -------------------------------------------------------------------


@dataclass(frozen=True)
class SelectedRow:
    """One active selection, for statistics."""

    kind: str
    purpose: str
    face_amount: Decimal
    face_tax: Decimal
    effective_tax: Decimal


@dataclass(frozen=True)
class RateRow:
    """The face amounts of the selected invoices' lines at one rate, by purpose."""

    purpose: str
    rate: str
    amount: Decimal
    tax: Decimal


def statistics(rows: Iterable[SelectedRow], rates: Iterable[RateRow]) -> dict[str, object]:
    """Totals by purpose and kind, and by purpose and rate: the snapshot 申请统计 freezes.

    Decimals are strings so that the snapshot is canonical JSON.

    >>> rows = [SelectedRow("digital_special", "deduct", Decimal("100"), Decimal("13"), Decimal("10"))]
    >>> stats = statistics(rows * 2, [])
    >>> stats["totals"]["deduct"]
    {'invoices': 2, 'amount': '200.00', 'face_tax': '26.00', 'effective_tax': '20.00'}
    """
    by_kind: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO] * 4)
    totals: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO] * 4)
    for row in rows:
        for bucket in (by_kind[(row.purpose, row.kind)], totals[row.purpose]):
            bucket[0] += 1
            bucket[1] += row.face_amount
            bucket[2] += row.face_tax
            bucket[3] += row.effective_tax
    return {
        "by_kind": [
            {"purpose": purpose, "kind": kind, **_sums(values)}
            for (purpose, kind), values in sorted(by_kind.items())
        ],
        "by_rate": [
            {
                "purpose": r.purpose,
                "rate": r.rate,
                "amount": str(r.amount.quantize(ZERO)),
                "tax": str(r.tax.quantize(ZERO)),
            }
            for r in sorted(rates, key=lambda r: (r.purpose, r.rate))
        ],
        "totals": {purpose: _sums(values) for purpose, values in sorted(totals.items())},
    }


def _sums(values: list[Decimal]) -> dict[str, object]:
    return {
        "invoices": int(values[0]),
        "amount": str(values[1].quantize(ZERO)),
        "face_tax": str(values[2].quantize(ZERO)),
        "effective_tax": str(values[3].quantize(ZERO)),
    }
