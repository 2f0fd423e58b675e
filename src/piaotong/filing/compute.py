"""The VAT return computation (增值税申报表计算): pure functions over dataclasses, no database.

Terms (china-einvoice.md §8, §4):

- output (销项): issued invoices of the period, grouped by special (专票) or other invoices and by
  rate. Red-letter invoices (红字发票) are negative rows of their own period; voided invoices
  (作废) are not counted at all (the database aggregation leaves them out).
- general taxpayer (一般纳税人): output tax at 13/9/6% (一般计税) minus the deductible total
  (应抵扣税额合计 = input tax from confirmed deductions − input tax transferred out + credit
  brought forward); what is left is payable, a deficit is carried forward (期末留抵). Sales at the
  simplified levy rates 5% and 3% (简易计税) are taxed separately and never offset by input tax.
  Input tax transferred out (进项税额转出) is the tax of red-letter invoices received in the
  period against invoices whose deduction was already confirmed.
- small-scale taxpayer (小规模纳税人): no input credit; tax due = sales × levy rate per rate; when
  total sales of the period stay within CNY 100,000 a month (300,000 a quarter), sales on
  ordinary invoices are exempt (小微企业免税), sales on special invoices stay taxable.

Every number of the result is one named line (`LINES`), so results compare line by line
(amendments) and every line names the invoices behind it (`DRILL_DOWN`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from piaotong.lib.money import RATES, SMALL_SCALE_MONTHLY_THRESHOLD

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
GENERAL_RATES = frozenset({"0.13", "0.09", "0.06"})
SIMPLIFIED_RATES = frozenset({"0.05", "0.03", "0.01"})
GENERAL, SMALL_SCALE = "general", "small_scale"


@dataclass(frozen=True)
class OutputGroup:
    """Issued invoices' lines of one class and rate: `special` for 专票, else other invoices."""

    special: bool
    rate: str
    amount: Decimal
    tax: Decimal
    lines: int = 0


@dataclass(frozen=True)
class InputGroup:
    """Confirmed deductions (purpose deduct) of one invoice kind."""

    kind: str
    invoices: int
    amount: Decimal
    face_tax: Decimal
    effective_tax: Decimal


@dataclass(frozen=True)
class ReturnFacts:
    """Everything a return is computed from; built by `filing.aggregate` from the database."""

    period: str
    taxpayer_kind: str
    months: int = 1
    output: tuple[OutputGroup, ...] = ()
    input: tuple[InputGroup, ...] = ()
    transfer_out: Decimal = ZERO
    credit_brought_forward: Decimal = ZERO


@dataclass(frozen=True)
class LevyRow:
    """Small-scale: sales at one levy rate, split into taxable and exempt."""

    rate: str
    taxable_sales: Decimal
    exempt_sales: Decimal
    tax_due: Decimal
    exempt_tax: Decimal


@dataclass(frozen=True)
class ReturnResult:
    """The computed return: `lines` in the order of `LINES` for the taxpayer kind."""

    period: str
    taxpayer_kind: str
    months: int
    lines: dict[str, Decimal]
    levy: tuple[LevyRow, ...] = ()
    below_threshold: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def payable(self) -> Decimal:
        return self.lines["payable"]

    @property
    def credit_carried_forward(self) -> Decimal:
        return self.lines.get("credit_carried_forward", ZERO)

    def as_json(self) -> dict[str, Any]:
        """Canonical-JSON-ready (decimals as strings): what a version stores and exports."""
        return {
            "period": self.period,
            "taxpayer_kind": self.taxpayer_kind,
            "months": self.months,
            "lines": {name: str(value) for name, value in self.lines.items()},
            "levy": [
                {
                    "rate": row.rate,
                    "taxable_sales": str(row.taxable_sales),
                    "exempt_sales": str(row.exempt_sales),
                    "tax_due": str(row.tax_due),
                    "exempt_tax": str(row.exempt_tax),
                }
                for row in self.levy
            ],
            "below_threshold": self.below_threshold,
        }


# Line names in the order the return prints them, with their labels (栏次名称).
LINES: dict[str, dict[str, str | Promise]] = {
    GENERAL: {
        "output_amount": _("Sales at general rates (一般计税销售额)"),
        "output_tax": _("Output tax (销项税额)"),
        "zero_rated_sales": _("Zero-rated sales (零税率销售额)"),
        "exempt_sales": _("Exempt sales (免税销售额)"),
        "input_tax": _("Input tax deducted (进项税额)"),
        "transfer_out": _("Input tax transferred out (进项税额转出)"),
        "credit_brought_forward": _("Credit brought forward (上期留抵税额)"),
        "deductible_total": _("Total deductible (应抵扣税额合计)"),
        "actually_deducted": _("Actually deducted (实际抵扣税额)"),
        "general_tax": _("Tax payable, general method (应纳税额)"),
        "credit_carried_forward": _("Credit carried forward (期末留抵税额)"),
        "simplified_sales": _("Sales at levy rates (简易计税销售额)"),
        "simplified_tax": _("Tax payable, simplified method (简易计税应纳税额)"),
        "payable": _("Total tax payable (应纳税额合计)"),
    },
    SMALL_SCALE: {
        "sales_total": _("Total sales (销售额合计)"),
        "special_sales": _("Sales on special invoices (专票销售额)"),
        "taxable_sales": _("Taxable sales (应征增值税不含税销售额)"),
        "small_business_exempt_sales": _("Exempt sales of small businesses (小微企业免税销售额)"),
        "other_exempt_sales": _("Other exempt sales (其他免税销售额)"),
        "tax_due": _("Tax due (本期应纳税额)"),
        "exempt_tax": _("Tax exempted (本期免税额)"),
        "payable": _("Tax payable (本期应补税额)"),
    },
}

# Which invoices stand behind each line: a drill-down part and its filters (see aggregate.py).
DRILL_DOWN: dict[str, dict[str, str]] = {
    "output_amount": {"part": "output", "rates": "general"},
    "output_tax": {"part": "output", "rates": "general"},
    "zero_rated_sales": {"part": "output", "rate": "0"},
    "exempt_sales": {"part": "output", "rate": "exempt"},
    "input_tax": {"part": "input"},
    "transfer_out": {"part": "transfer_out"},
    "simplified_sales": {"part": "output", "rates": "simplified"},
    "simplified_tax": {"part": "output", "rates": "simplified"},
    "sales_total": {"part": "output"},
    "special_sales": {"part": "output", "special": "1"},
    "taxable_sales": {"part": "output"},
    "small_business_exempt_sales": {"part": "output", "special": "0"},
    "other_exempt_sales": {"part": "output", "rate": "exempt"},
    "tax_due": {"part": "output"},
    "exempt_tax": {"part": "output", "special": "0"},
}


def threshold(months: int) -> Decimal:
    """The small-scale exemption threshold of a period: CNY 100,000 per month."""
    return SMALL_SCALE_MONTHLY_THRESHOLD * months


def _levy(amount: Decimal, rate: str) -> Decimal:
    return (amount * RATES[rate].value).quantize(CENT, rounding=ROUND_HALF_UP)


def _sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, ZERO).quantize(CENT)


def compute_return(facts: ReturnFacts) -> ReturnResult:
    if facts.taxpayer_kind == SMALL_SCALE:
        return compute_small_scale(facts)
    return compute_general(facts)


def compute_general(facts: ReturnFacts) -> ReturnResult:
    """A general taxpayer's return (一般纳税人申报表主表, the lines this platform can know).

    >>> facts = ReturnFacts("202503", GENERAL, output=(OutputGroup(True, "0.13", Decimal("1000"), Decimal("130")),),
    ...     input=(InputGroup("digital_special", 1, Decimal("500"), Decimal("65"), Decimal("65")),),
    ...     credit_brought_forward=Decimal("5"))
    >>> result = compute_general(facts)
    >>> result.lines["payable"], result.lines["credit_carried_forward"]
    (Decimal('60.00'), Decimal('0.00'))
    """
    output = facts.output
    output_tax = _sum(g.tax for g in output if g.rate in GENERAL_RATES)
    deductible = _sum(g.effective_tax for g in facts.input) - facts.transfer_out
    deductible = (deductible + facts.credit_brought_forward).quantize(CENT)
    net = output_tax - deductible
    general_tax = max(net, ZERO)
    simplified_tax = _sum(g.tax for g in output if g.rate in SIMPLIFIED_RATES)
    lines = {
        "output_amount": _sum(g.amount for g in output if g.rate in GENERAL_RATES),
        "output_tax": output_tax,
        "zero_rated_sales": _sum(g.amount for g in output if g.rate == "0"),
        "exempt_sales": _sum(g.amount for g in output if g.rate == "exempt"),
        "input_tax": _sum(g.effective_tax for g in facts.input),
        "transfer_out": facts.transfer_out.quantize(CENT),
        "credit_brought_forward": facts.credit_brought_forward.quantize(CENT),
        "deductible_total": deductible,
        "actually_deducted": output_tax - general_tax,
        "general_tax": general_tax,
        "credit_carried_forward": max(-net, ZERO),
        "simplified_sales": _sum(g.amount for g in output if g.rate in SIMPLIFIED_RATES),
        "simplified_tax": simplified_tax,
        "payable": general_tax + simplified_tax,
    }
    return ReturnResult(facts.period, GENERAL, facts.months, lines)


def compute_small_scale(facts: ReturnFacts) -> ReturnResult:
    """A small-scale taxpayer's return (小规模纳税人申报表): levy rate × sales, with the
    exemption of ordinary-invoice sales when the period's sales stay within the threshold.

    >>> facts = ReturnFacts("202503", SMALL_SCALE, output=(
    ...     OutputGroup(False, "0.01", Decimal("90000"), Decimal("900")),
    ...     OutputGroup(True, "0.01", Decimal("5000"), Decimal("50"))))
    >>> result = compute_small_scale(facts)
    >>> result.below_threshold, result.lines["tax_due"], result.lines["exempt_tax"]
    (True, Decimal('50.00'), Decimal('900.00'))
    """
    taxed = [g for g in facts.output if g.rate in RATES and g.rate not in {"exempt", "non_taxable"}]
    sales_total = _sum(g.amount for g in facts.output if g.rate != "non_taxable")
    below = sales_total <= threshold(facts.months)
    levy = _levy_rows(taxed, below)
    lines = {
        "sales_total": sales_total,
        "special_sales": _sum(
            g.amount for g in facts.output if g.special and g.rate != "non_taxable"
        ),
        "taxable_sales": _sum(row.taxable_sales for row in levy),
        "small_business_exempt_sales": _sum(row.exempt_sales for row in levy),
        "other_exempt_sales": _sum(g.amount for g in facts.output if g.rate == "exempt"),
        "tax_due": _sum(row.tax_due for row in levy),
        "exempt_tax": _sum(row.exempt_tax for row in levy),
    }
    lines["payable"] = lines["tax_due"]
    return ReturnResult(facts.period, SMALL_SCALE, facts.months, lines, tuple(levy), below)


def _levy_rows(groups: list[OutputGroup], below_threshold: bool) -> list[LevyRow]:
    """Per levy rate: special-invoice sales are always taxed; ordinary-invoice sales are exempt
    below the threshold. Tax is computed on the rate's total sales, as the form does."""
    by_rate: dict[str, list[Decimal]] = {}
    for group in groups:
        totals = by_rate.setdefault(group.rate, [ZERO, ZERO])
        exempt = below_threshold and not group.special
        totals[1 if exempt else 0] += group.amount
    return [
        LevyRow(rate, taxable, exempt, _levy(taxable, rate), _levy(exempt, rate))
        for rate, (taxable, exempt) in sorted(by_rate.items())
    ]


# --- Versions (更正申报) ------------------------------------------------------------------------


@dataclass(frozen=True)
class LineChange:
    name: str
    before: Decimal
    after: Decimal

    @property
    def delta(self) -> Decimal:
        return self.after - self.before


def differences(before: Mapping[str, str], after: Mapping[str, str]) -> list[LineChange]:
    """The lines whose value differs between two stored versions (`as_json()["lines"]`).

    >>> differences({"payable": "10.00", "output_tax": "5.00"}, {"payable": "12.50", "output_tax": "5.00"})
    [LineChange(name='payable', before=Decimal('10.00'), after=Decimal('12.50'))]
    """
    names = list(before) + [name for name in after if name not in before]
    changes = []
    for name in names:
        old, new = Decimal(before.get(name, "0")), Decimal(after.get(name, "0"))
        if old != new:
            changes.append(LineChange(name, old, new))
    return changes
