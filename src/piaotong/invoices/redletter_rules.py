"""Red-letter arithmetic (红字金额): which amounts a red-letter invoice (红字发票) may reverse.

Terms: the blue invoice (蓝字发票) is the positive original; a red line (红字明细) reverses part
or all of one blue line, with negative amount and tax. What remains of a blue line is its amount
minus every red line already issued or still requested against it; a request may never take
more than remains, so a blue invoice is never over-flushed (超额红冲).

Pure functions over Decimal and dataclasses: no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation, raise_all
from piaotong.lib.money import CENT, RATES, round_cents

ZERO = Decimal("0.00")
NORMAL_LINE = 0


@dataclass(frozen=True)
class BlueLine:
    """One line of the blue invoice, with what earlier red lines have not yet taken."""

    position: int
    kind: int
    tax_rate: str
    amount: Decimal
    tax: Decimal
    quantity: Decimal | None
    unit_price: Decimal | None
    remaining_amount: Decimal
    remaining_tax: Decimal


@dataclass(frozen=True)
class RedLineRequest:
    """What the requester asks to reverse on one blue line: a pre-tax amount (positive)."""

    position: int
    amount: Decimal


@dataclass(frozen=True)
class RedLine:
    """One line of the red invoice: negative amount and tax, against blue line `position`."""

    position: int
    amount: Decimal
    tax: Decimal
    quantity: Decimal | None

    def as_json(self) -> dict[str, object]:
        return {
            "position": self.position,
            "amount": str(self.amount),
            "tax": str(self.tax),
            "quantity": None if self.quantity is None else str(self.quantity),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RedLine:
        quantity = data.get("quantity")
        return cls(
            position=int(str(data["position"])),
            amount=Decimal(str(data["amount"])),
            tax=Decimal(str(data["tax"])),
            quantity=None if quantity is None else Decimal(str(quantity)),
        )


def remaining(
    blue: Sequence[tuple[int, int, str, Decimal, Decimal, Decimal | None, Decimal | None]],
    taken: Iterable[RedLine],
) -> list[BlueLine]:
    """Blue lines (position, kind, rate, amount, tax, quantity, unit price) less the red lines
    already taken (their negative amounts are added).

    >>> lines = remaining([(1, 0, "0.06", Decimal("100.00"), Decimal("6.00"), None, None)],
    ...                   [RedLine(1, Decimal("-40.00"), Decimal("-2.40"), None)])
    >>> lines[0].remaining_amount, lines[0].remaining_tax
    (Decimal('60.00'), Decimal('3.60'))
    """
    taken_amount: dict[int, Decimal] = {}
    taken_tax: dict[int, Decimal] = {}
    for line in taken:
        taken_amount[line.position] = taken_amount.get(line.position, ZERO) + line.amount
        taken_tax[line.position] = taken_tax.get(line.position, ZERO) + line.tax
    return [
        BlueLine(
            position=position,
            kind=kind,
            tax_rate=rate,
            amount=amount,
            tax=tax,
            quantity=quantity,
            unit_price=unit_price,
            remaining_amount=amount + taken_amount.get(position, ZERO),
            remaining_tax=tax + taken_tax.get(position, ZERO),
        )
        for position, kind, rate, amount, tax, quantity, unit_price in blue
    ]


def is_untouched(lines: Sequence[BlueLine]) -> bool:
    """Nothing of the blue invoice has been reversed or requested yet."""
    return all(
        line.remaining_amount == line.amount and line.remaining_tax == line.tax for line in lines
    )


def is_fully_flushed(lines: Sequence[BlueLine]) -> bool:
    """Every line is reversed to zero (全额红冲)."""
    return all(line.remaining_amount == 0 and line.remaining_tax == 0 for line in lines)


def full_red_lines(lines: Sequence[BlueLine]) -> list[RedLine]:
    """A full reversal: the negation of everything that remains, line by line.

    Only allowed while nothing has been reversed: a full reversal (全额红冲) reverses the whole
    invoice; once part is reversed, the rest is reversed as a partial reversal.
    """
    if not is_untouched(lines):
        raise RuleViolation(
            "full",
            "already_partly_reversed",
            _(
                "Part of this invoice is already reversed or requested: a full reversal is no "
                "longer possible. Request a partial reversal of what remains."
            ),
        )
    return [
        RedLine(
            position=line.position,
            amount=-line.amount,
            tax=-line.tax,
            quantity=None if line.quantity is None else -line.quantity,
        )
        for line in lines
    ]


def _parse_amount(text: object, field: str) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0 or value != value.quantize(CENT):
        raise RuleViolation(
            field,
            "invalid_amount",
            _(
                "Enter the pre-tax amount to reverse as a positive number with at most two decimals."
            ),
        )
    return value


def request_from_input(position: object, amount: object, index: int) -> RedLineRequest:
    """One requested line from user input (form or API), checked for shape only."""
    try:
        number = int(str(position))
    except ValueError:
        number = 0
    if number < 1:
        raise RuleViolation(
            f"lines.{index}.position",
            "invalid_position",
            _("Name the blue invoice's line by its number (1, 2, ...)."),
        )
    return RedLineRequest(number, _parse_amount(amount, f"lines.{index}.amount"))


def _line_tax(line: BlueLine, amount: Decimal) -> Decimal:
    """Tax on a reversed amount; reversing all that remains takes all the remaining tax, so a
    line reversed in several steps ends at exactly zero despite rounding."""
    if amount == line.remaining_amount:
        return line.remaining_tax
    rate = RATES[line.tax_rate].value if line.tax_rate in RATES else Decimal(line.tax_rate)
    return round_cents(amount * rate)


def _partial_line(line: BlueLine, wanted: RedLineRequest, index: int) -> RedLine:
    field = f"lines.{index}.amount"
    if line.kind != NORMAL_LINE:
        raise RuleViolation(
            f"lines.{index}.position",
            "discount_line",
            _(
                "Line %(position)s has a discount (折扣行); lines with discounts are reversed only "
                "by a full reversal."
            ),
            {"position": line.position},
        )
    if wanted.amount > line.remaining_amount:
        raise RuleViolation(
            field,
            "over_flush",
            _(
                "Line %(position)s has %(remaining)s left to reverse; %(amount)s is more. Reverse "
                "at most what remains (no over-reversal)."
            ),
            {
                "position": line.position,
                "remaining": line.remaining_amount,
                "amount": wanted.amount,
            },
        )
    tax = _line_tax(line, wanted.amount)
    if tax > line.remaining_tax:
        raise RuleViolation(
            field,
            "over_flush_tax",
            _(
                "The tax on this amount (%(tax)s) exceeds the tax left on line %(position)s "
                "(%(remaining)s). Reverse the whole remaining amount of the line instead."
            ),
            {"position": line.position, "tax": tax, "remaining": line.remaining_tax},
        )
    quantity = None
    if line.quantity is not None and line.unit_price and wanted.amount == line.remaining_amount:
        quantity = None if line.remaining_amount != line.amount else -line.quantity
    return RedLine(line.position, -wanted.amount, -tax, quantity)


def partial_red_lines(lines: Sequence[BlueLine], wanted: Sequence[RedLineRequest]) -> list[RedLine]:
    """A partial reversal (部分红冲): the requested amounts, checked against what remains.

    >>> blue = remaining([(1, 0, "0.13", Decimal("200.00"), Decimal("26.00"), None, None)], [])
    >>> partial_red_lines(blue, [RedLineRequest(1, Decimal("50.00"))])
    [RedLine(position=1, amount=Decimal('-50.00'), tax=Decimal('-6.50'), quantity=None)]
    """
    by_position = {line.position: line for line in lines}
    violations: list[RuleViolation] = []
    result: list[RedLine] = []
    seen: set[int] = set()
    if not wanted:
        violations.append(
            RuleViolation(
                "lines",
                "required",
                _("Name at least one line and the amount of it to reverse."),
            )
        )
    for index, request in enumerate(wanted):
        line = by_position.get(request.position)
        if line is None or request.position in seen:
            violations.append(
                RuleViolation(
                    f"lines.{index}.position",
                    "unknown_line",
                    _(
                        "The blue invoice has no line %(position)s, or it is named twice. Use each "
                        "line number once."
                    ),
                    {"position": request.position},
                )
            )
            continue
        seen.add(request.position)
        try:
            result.append(_partial_line(line, request, index))
        except RuleViolation as violation:
            violations.append(violation)
    raise_all(violations)
    return result


@dataclass(frozen=True)
class RedTotals:
    amount: Decimal
    tax: Decimal

    @property
    def total(self) -> Decimal:
        return self.amount + self.tax


def totals_of(lines: Iterable[RedLine]) -> RedTotals:
    """合计金额 and 合计税额 of red lines (negative)."""
    items = list(lines)
    return RedTotals(
        sum((line.amount for line in items), ZERO), sum((line.tax for line in items), ZERO)
    )
