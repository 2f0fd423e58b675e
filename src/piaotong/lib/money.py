"""Tax arithmetic (税额计算) over `Decimal`: rates, line amounts, totals and tolerances.

Terms (china-einvoice.md §4):

- tax rate (税率) and levy rate (征收率): the rate on a line. 13/9/6% are rates for general
  taxpayers (一般纳税人); 5/3/1% are levy rates of the simplified method (简易计税), used by
  small-scale taxpayers (小规模纳税人) and by general taxpayers in specific cases; 0% (零税率)
  is for exports; exempt (免税) and not subject to VAT (不征税) also print a zero tax.
- amount (金额): a line's pre-tax amount, in yuan to the fen (0.01).
- tax (税额): amount × rate, rounded half up (四舍五入) to the fen.
- gross (价税合计 of a line, 含税金额): amount + tax.
- tax-inclusive pricing (含税价): the seller gives the gross; tax = gross × rate / (1 + rate)
  rounded, amount = gross − tax.
- line kind (发票行性质): 0 normal (正常行), 1 discount line (折扣行, negative), 2 discounted line
  (被折扣行, the line a discount applies to).
- tolerance (误差): invoicing software accepts a supplied tax that differs from the computed one
  by at most 0.06 per line and 1.27 per invoice, and prints the supplied value.

Quantities and unit prices (数量, 单价) keep at most 13 decimal places and 15 significant
digits: 15 significant digits is what an IEEE double holds exactly, so the values round-trip
unchanged through SQLite (which may store them as REAL) as well as PostgreSQL's NUMERIC.

>>> rate = parse_rate("13%")
>>> line = compute_line(LineInput(rate=rate, quantity=Decimal("3"), unit_price=Decimal("10")))
>>> line.amount, line.tax, line.gross
(Decimal('30.00'), Decimal('3.90'), Decimal('33.90'))
>>> gross = compute_line(LineInput(rate=rate, amount=Decimal("113.00"), tax_inclusive=True))
>>> gross.amount, gross.tax
(Decimal('100.00'), Decimal('13.00'))
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from types import MappingProxyType
from typing import Literal, ParamSpec, TypeVar

from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation, RuleViolations

CENT = Decimal("0.01")
ZERO = Decimal("0")
ZERO_MONEY = Decimal("0.00")
# NUMERIC(18,2) columns could hold more, but an invoice above hundreds of billions of yuan is a
# typing error, never a sale.
MAX_AMOUNT = Decimal("999999999999.99")
MAX_LINES = 2000
MAX_DECIMAL_PLACES = 13
MAX_SIGNIFICANT_DIGITS = 15
AMOUNT_TOLERANCE = Decimal("0.01")
LINE_TAX_TOLERANCE = Decimal("0.06")
INVOICE_TAX_TOLERANCE = Decimal("1.27")
# Small-scale taxpayers with monthly sales up to CNY 100,000 are exempt (§4, §8).
SMALL_SCALE_MONTHLY_THRESHOLD = Decimal("100000")

NORMAL, DISCOUNT, DISCOUNTED = 0, 1, 2
LINE_KINDS = (NORMAL, DISCOUNT, DISCOUNTED)

# A 15-digit quantity times a 15-digit unit price has 30 digits: the default precision (28)
# would round the product before we do, so all arithmetic here runs with room to spare.
_CONTEXT = Context(prec=40, rounding=ROUND_HALF_UP)
_P = ParamSpec("_P")
_T = TypeVar("_T")


def _exact(func: Callable[_P, _T]) -> Callable[_P, _T]:
    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        with localcontext(_CONTEXT):
            return func(*args, **kwargs)

    return wrapper


# --- Rates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaxRate:
    """One rate a line can carry. `key` is stable and stored; `value` is the fraction."""

    key: str
    value: Decimal
    label_zh: str
    label_en: str

    @property
    def is_zero(self) -> bool:
        """True for 0%, exempt and not-taxable: the tax on such a line is always 0.00."""
        return self.value == 0


RATES: Mapping[str, TaxRate] = MappingProxyType(
    {
        rate.key: rate
        for rate in (
            TaxRate("0.13", Decimal("0.13"), "13%", "13%"),
            TaxRate("0.09", Decimal("0.09"), "9%", "9%"),
            TaxRate("0.06", Decimal("0.06"), "6%", "6%"),
            TaxRate("0.05", Decimal("0.05"), "5%", "5%"),
            TaxRate("0.03", Decimal("0.03"), "3%", "3%"),
            TaxRate("0.01", Decimal("0.01"), "1%", "1%"),
            TaxRate("0", ZERO, "0%", "0% (zero-rated)"),
            TaxRate("exempt", ZERO, "免税", "Exempt"),
            TaxRate("non_taxable", ZERO, "不征税", "Not subject to VAT"),
        )
    }
)
# Numeric lookups find the zero-rated key for 0; exempt and not-taxable are chosen by word.
_RATES_BY_VALUE = {rate.value: rate for rate in RATES.values() if rate.key[0].isdigit()}
_RATE_WORDS = {
    "免税": "exempt",
    "tax exempt": "exempt",
    "tax-exempt": "exempt",
    "不征税": "non_taxable",
    "non-taxable": "non_taxable",
    "non taxable": "non_taxable",
    "nontaxable": "non_taxable",
    "not taxable": "non_taxable",
    "零税率": "0",
    "zero-rated": "0",
    "zero rated": "0",
}

TaxpayerKind = Literal["general", "small_scale"]
# General taxpayers (一般纳税人): 13/9/6%, 0% on exports, and the simplified 5% (real estate,
# labour dispatch) and 3% (e.g. construction 清包工, tap water) in the cases the law lists.
# The 1% reduction (until end-2027) applies only to small-scale taxpayers' 3% levy.
# Small-scale taxpayers (小规模纳税人): 3% or the reduced 1%, 5% for real estate; their exports
# are exempt rather than zero-rated (china-einvoice.md §4, §8).
_TAXPAYER_RATES: dict[str, frozenset[str]] = {
    "general": frozenset({"0.13", "0.09", "0.06", "0.05", "0.03", "0", "exempt", "non_taxable"}),
    "small_scale": frozenset({"0.05", "0.03", "0.01", "exempt", "non_taxable"}),
}


def parse_rate(text: str | Decimal | TaxRate) -> TaxRate:
    """The rate meant by `text`: "13%", "13", "0.13", Decimal("0.13"), "免税", "不征税"...

    A bare number of 1 or more is read as a percentage, since no VAT rate reaches 100%.

    >>> parse_rate("13%").key, parse_rate("9").key, parse_rate(Decimal("0.060")).key
    ('0.13', '0.09', '0.06')
    >>> parse_rate("免税").label_en
    'Exempt'
    """
    if isinstance(text, TaxRate):
        return text
    if isinstance(text, str):
        cleaned = unicodedata.normalize("NFKC", text).strip().lower()
        key = _RATE_WORDS.get(cleaned, cleaned)
        if key in RATES:
            return RATES[key]
        text = cleaned
    fraction = _rate_fraction(text)
    rate = None if fraction is None else _RATES_BY_VALUE.get(fraction)
    if rate is None:
        raise RuleViolation(
            "tax_rate",
            "unknown_rate",
            _(
                "Unknown tax rate %(rate)s. Use one of 13%%, 9%%, 6%%, 5%%, 3%%, 1%%, 0%%, "
                "免税 (exempt) or 不征税 (not subject to VAT)."
            ),
            {"rate": str(text)},
        )
    return rate


def _rate_fraction(text: str | Decimal) -> Decimal | None:
    percent = isinstance(text, str) and text.endswith("%")
    if percent:
        text = str(text)[:-1]
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return value / 100 if percent or value >= 1 else value


def rates_for_taxpayer(kind: TaxpayerKind) -> frozenset[str]:
    """The rate keys a seller of this taxpayer kind may put on a line.

    >>> sorted(rates_for_taxpayer("small_scale"))
    ['0.01', '0.03', '0.05', 'exempt', 'non_taxable']
    """
    try:
        return _TAXPAYER_RATES[kind]
    except KeyError:
        raise RuleViolation(
            "taxpayer_kind",
            "unknown_taxpayer_kind",
            _("Unknown taxpayer kind %(kind)s; use general or small_scale."),
            {"kind": kind},
        ) from None


def small_scale_exempt(monthly_sales: Decimal) -> bool:
    """True when a small-scale taxpayer's monthly sales stay within the exemption threshold.

    >>> small_scale_exempt(Decimal("100000.00")), small_scale_exempt(Decimal("100000.01"))
    (True, False)
    """
    return monthly_sales <= SMALL_SCALE_MONTHLY_THRESHOLD


# --- Lines -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineInput:
    """One line as entered. `amount` and `unit_price` include tax when `tax_inclusive`."""

    rate: TaxRate
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    tax: Decimal | None = None
    tax_inclusive: bool = False
    kind: int = NORMAL


@dataclass(frozen=True)
class LineAmounts:
    """A computed line, pre-tax. Invariant: gross = amount + tax, all three to the fen.

    `exact_tax` is the unrounded tax the input implies (amount × rate, or gross × rate /
    (1 + rate)); the invoice-level tolerance is measured against it. None means
    amount × rate.
    """

    amount: Decimal
    tax: Decimal
    gross: Decimal
    quantity: Decimal | None
    unit_price: Decimal | None
    rate: TaxRate
    kind: int
    exact_tax: Decimal | None = None

    def negated(self) -> LineAmounts:
        """The same line on a red-letter invoice: negative amounts and quantity, same price."""
        return replace(
            self,
            amount=-self.amount,
            tax=-self.tax,
            gross=-self.gross,
            quantity=None if self.quantity is None else -self.quantity,
            exact_tax=None if self.exact_tax is None else -self.exact_tax,
        )


@dataclass(frozen=True)
class Totals:
    """合计金额, 合计税额 and 价税合计 of an invoice."""

    amount: Decimal
    tax: Decimal
    total: Decimal

    def negated(self) -> Totals:
        return Totals(-self.amount, -self.tax, -self.total)


def round_cents(value: Decimal) -> Decimal:
    """Round half up to the fen, as tax law and every invoicing program do.

    >>> round_cents(Decimal("0.005")), round_cents(Decimal("-0.005")), round_cents(Decimal("2.675"))
    (Decimal('0.01'), Decimal('-0.01'), Decimal('2.68'))
    """
    return value.quantize(CENT, rounding=ROUND_HALF_UP, context=_CONTEXT)


def fine_text(value: Decimal | None) -> str | None:
    """A quantity or unit price as printed: plain digits, no trailing zeros after the point.

    >>> fine_text(Decimal("2.5000000000000")), fine_text(Decimal("10")), fine_text(None)
    ('2.5', '10', None)
    """
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def round_fine(value: Decimal) -> Decimal:
    """Round a quantity or unit price half up to 13 decimal places and 15 significant digits.

    Integer digits are kept first, so a large price loses decimals rather than value; trailing
    zeros are dropped.

    >>> round_fine(Decimal(10) / Decimal("1.13"))
    Decimal('8.8495575221239')
    >>> round_fine(Decimal(123456789) / Decimal("1.13"))
    Decimal('109253795.575221')
    """
    integer_digits = len(str(int(abs(value)))) if abs(value) >= 1 else 0
    places = min(MAX_DECIMAL_PLACES, MAX_SIGNIFICANT_DIGITS - integer_digits)
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_CONTEXT)
    return _plain(rounded)


def _plain(value: Decimal) -> Decimal:
    """The value without trailing fractional zeros; never normalized to the form 1E+2."""
    text = format(value, "f")
    return Decimal(text.rstrip("0").rstrip(".") if "." in text else text)


def _shape(value: Decimal) -> tuple[int, int]:
    """(significant digits, decimal places) of a finite value, trailing zeros ignored."""
    whole, _dot, fraction = format(abs(value), "f").partition(".")
    fraction = fraction.rstrip("0")
    return len((whole + fraction).strip("0")), len(fraction)


@_exact
def compute_line(line: LineInput) -> LineAmounts:
    """Compute one line, or raise the first `RuleViolation` found in it.

    `check_invoice` reports every problem of every line at once; use it for whole invoices.
    """
    violations = _input_violations(line)
    if violations:
        raise violations[0]
    return _compute(line)


def _compute(line: LineInput) -> LineAmounts:
    rate = line.rate.value
    base = _base_amount(line)
    exact_tax = base * rate / (1 + rate) if line.tax_inclusive else base * rate
    tax = _settle_tax(line.tax, round_cents(exact_tax))
    amount, gross = (base - tax, base) if line.tax_inclusive else (base, base + tax)
    _raise_if(_amount_sign_violation(amount, line.kind))
    return LineAmounts(
        amount=amount,
        tax=tax,
        gross=gross,
        quantity=None if line.quantity is None else _plain(line.quantity),
        unit_price=_pre_tax_unit_price(line, amount),
        rate=line.rate,
        kind=line.kind,
        exact_tax=exact_tax,
    )


def _base_amount(line: LineInput) -> Decimal:
    """The amount as entered (gross when tax-inclusive), from quantity × unit price if absent."""
    if line.quantity is None or line.unit_price is None:
        assert line.amount is not None  # _input_violations requires it
        return round_cents(line.amount)
    product = line.quantity * line.unit_price
    if line.amount is None:
        amount = round_cents(product)
        _raise_if(_money_violation(amount, "amount") or _amount_sign_violation(amount, line.kind))
        return amount
    if abs(product - line.amount) > AMOUNT_TOLERANCE:
        raise RuleViolation(
            "amount",
            "amount_mismatch",
            _(
                "The amount %(amount)s does not match quantity × unit price = %(product)s. "
                "Correct the amount, the quantity or the unit price."
            ),
            {"amount": line.amount, "product": round_cents(product)},
        )
    return round_cents(line.amount)


def _settle_tax(supplied: Decimal | None, computed: Decimal) -> Decimal:
    """The tax to print: the supplied one when within tolerance, as invoicing software does."""
    if supplied is None:
        return computed
    supplied = round_cents(supplied)
    if abs(supplied - computed) > LINE_TAX_TOLERANCE:
        raise RuleViolation(
            "tax",
            "tax_tolerance",
            _(
                "The tax %(tax)s differs from the computed %(computed)s by more than 0.06. "
                "Leave the tax empty to have it computed, or check the amount and the rate."
            ),
            {"tax": supplied, "computed": computed},
        )
    return supplied


def _pre_tax_unit_price(line: LineInput, amount: Decimal) -> Decimal | None:
    if line.unit_price is None:
        return None
    if not line.tax_inclusive:
        return _plain(line.unit_price)
    # Derived from the pre-tax amount when there is a quantity, so that quantity × unit price
    # still matches the printed amount when a supplied tax was kept.
    if line.quantity is not None:
        return round_fine(amount / line.quantity)
    return round_fine(line.unit_price / (1 + line.rate.value))


def _raise_if(violation: RuleViolation | None) -> None:
    if violation is not None:
        raise violation


# --- Checks on one line's input ------------------------------------------------------------


def _input_violations(line: LineInput) -> list[RuleViolation]:
    """Every problem visible in a line's fields before any arithmetic."""
    found = (
        _kind_violation(line.kind),
        _fine_violation(line.quantity, "quantity"),
        _fine_violation(line.unit_price, "unit_price"),
        _pairing_violation(line),
        _given_amount_violation(line),
        _given_tax_violation(line),
    )
    return [violation for violation in found if violation is not None]


def _kind_violation(kind: int) -> RuleViolation | None:
    if kind in LINE_KINDS:
        return None
    return RuleViolation(
        "kind",
        "unknown_kind",
        _("Unknown line kind %(kind)s: use 0 (normal), 1 (discount) or 2 (discounted)."),
        {"kind": kind},
    )


def _fine_violation(value: Decimal | None, field: str) -> RuleViolation | None:
    if value is None:
        return None
    if not value.is_finite():
        return RuleViolation(field, "not_a_number", _("Enter a number."))
    if value <= 0:
        return RuleViolation(
            field,
            "not_positive",
            _("%(value)s is not allowed: it must be greater than zero, or left empty."),
            {"value": value},
        )
    digits, places = _shape(value)
    if places > MAX_DECIMAL_PLACES:
        return RuleViolation(
            field,
            "too_many_decimals",
            _("%(value)s has %(places)s decimal places; at most 13 are allowed. Round it."),
            {"value": value, "places": places},
        )
    if digits > MAX_SIGNIFICANT_DIGITS:
        return RuleViolation(
            field,
            "too_many_digits",
            _("%(value)s has %(digits)s significant digits; at most 15 are allowed. Round it."),
            {"value": value, "digits": digits},
        )
    return None


def _pairing_violation(line: LineInput) -> RuleViolation | None:
    if line.kind == DISCOUNT and (line.quantity is not None or line.unit_price is not None):
        field = "quantity" if line.quantity is not None else "unit_price"
        return RuleViolation(
            field,
            "discount_has_quantity",
            _("A discount line has only an amount; leave quantity and unit price empty."),
        )
    if line.quantity is not None and line.unit_price is None:
        return RuleViolation(
            "quantity",
            "quantity_without_unit_price",
            _("A quantity needs a unit price; enter the unit price or leave the quantity empty."),
        )
    return None


def _given_amount_violation(line: LineInput) -> RuleViolation | None:
    if line.amount is None:
        if line.quantity is not None and line.unit_price is not None:
            return None
        return RuleViolation(
            "amount",
            "amount_required",
            _("Enter the amount, or both the quantity and the unit price."),
        )
    return _money_violation(line.amount, "amount") or _amount_sign_violation(line.amount, line.kind)


def _given_tax_violation(line: LineInput) -> RuleViolation | None:
    tax = line.tax
    if tax is None:
        return None
    violation = _money_violation(tax, "tax")
    if violation is not None:
        return violation
    if line.rate.is_zero and tax != 0:
        return RuleViolation(
            "tax",
            "tax_not_zero",
            _("A line at %(rate)s carries no tax: the tax must be 0.00, not %(tax)s."),
            {"rate": line.rate.label_zh, "tax": tax},
        )
    if (tax < 0) != (line.kind == DISCOUNT) and tax != 0:
        return RuleViolation(
            "tax",
            "tax_sign",
            _("The tax %(tax)s has the wrong sign: it must have the sign of the amount."),
            {"tax": tax},
        )
    return None


def _money_violation(value: Decimal, field: str) -> RuleViolation | None:
    if not value.is_finite():
        return RuleViolation(field, "not_a_number", _("Enter a number."))
    if abs(value) > MAX_AMOUNT:
        return RuleViolation(
            field,
            "too_large",
            _("%(value)s is larger than 999,999,999,999.99, the most an invoice can carry."),
            {"value": value},
        )
    if value != value.quantize(CENT, context=_CONTEXT):
        return RuleViolation(
            field,
            "fractional_cents",
            _("%(value)s has fractions of a fen; money has at most two decimal places."),
            {"value": value},
        )
    return None


def _amount_sign_violation(amount: Decimal, kind: int) -> RuleViolation | None:
    if amount == 0:
        return RuleViolation(
            "amount",
            "amount_zero",
            _("The amount is zero; a line must carry an amount. Remove the line or enter one."),
        )
    if kind == DISCOUNT and amount > 0:
        return RuleViolation(
            "amount",
            "discount_not_negative",
            _("A discount line's amount must be negative, e.g. -%(amount)s."),
            {"amount": amount},
        )
    if kind != DISCOUNT and amount < 0:
        return RuleViolation(
            "amount",
            "amount_negative",
            _(
                "The amount %(amount)s is negative. Enter a discount as a discount line; "
                "reverse an invoice with a red-letter invoice."
            ),
            {"amount": amount},
        )
    return None


# --- Invoices ------------------------------------------------------------------------------


def compute_totals(lines: Sequence[LineAmounts]) -> Totals:
    """Σ amounts, Σ taxes and their sum (价税合计)."""
    amount = sum((line.amount for line in lines), ZERO_MONEY)
    tax = sum((line.tax for line in lines), ZERO_MONEY)
    return Totals(amount, tax, amount + tax)


@_exact
def check_invoice(lines: Sequence[LineInput]) -> tuple[list[LineAmounts], Totals]:
    """Compute a blue (positive) invoice's lines and totals, or raise `RuleViolations`.

    Every line is checked and all their violations are reported together, with fields
    prefixed "lines.<index>."; then the rules about the invoice as a whole.
    """
    _raise_all(_count_violations(lines))
    amounts, violations = _compute_all(lines)
    _raise_all(violations)
    totals = compute_totals(amounts)
    _raise_all([*_discount_violations(amounts), *_invoice_violations(amounts, totals)])
    return amounts, totals


def _raise_all(violations: list[RuleViolation]) -> None:
    if violations:
        raise RuleViolations(violations)


def _count_violations(lines: Sequence[LineInput]) -> list[RuleViolation]:
    if not lines:
        return [RuleViolation("lines", "no_lines", _("Add at least one line."))]
    if len(lines) > MAX_LINES:
        return [
            RuleViolation(
                "lines",
                "too_many_lines",
                _("Too many lines: %(count)s; at most %(max)s fit on one invoice."),
                {"count": len(lines), "max": MAX_LINES},
            )
        ]
    return []


def _compute_all(lines: Sequence[LineInput]) -> tuple[list[LineAmounts], list[RuleViolation]]:
    amounts: list[LineAmounts] = []
    violations: list[RuleViolation] = []
    for index, line in enumerate(lines):
        found = _input_violations(line)
        if not found:
            try:
                amounts.append(_compute(line))
                continue
            except RuleViolation as violation:
                found = [violation]
        violations.extend(violation.at(f"lines.{index}") for violation in found)
    return amounts, violations


def _discount_violations(lines: Sequence[LineAmounts]) -> list[RuleViolation]:
    found = []
    for index in range(len(lines)):
        violation = _discount_structure_violation(lines, index)
        if violation is not None:
            found.append(violation.at(f"lines.{index}"))
    return found


def _discount_structure_violation(lines: Sequence[LineAmounts], index: int) -> RuleViolation | None:
    line = lines[index]
    if line.kind == DISCOUNT:
        return _discount_line_violation(line, lines[index - 1] if index > 0 else None)
    following = lines[index + 1] if index + 1 < len(lines) else None
    if line.kind == DISCOUNTED and (following is None or following.kind != DISCOUNT):
        return RuleViolation(
            "kind",
            "discounted_without_discount",
            _(
                "A discounted line must be directly followed by its discount line; "
                "add the discount or mark this line as normal (0)."
            ),
        )
    return None


def _discount_line_violation(line: LineAmounts, before: LineAmounts | None) -> RuleViolation | None:
    if before is None or before.kind != DISCOUNTED:
        return RuleViolation(
            "kind",
            "discount_without_discounted",
            _(
                "A discount line must directly follow the line it discounts, "
                "and that line must be marked as discounted (2)."
            ),
        )
    if before.rate.key != line.rate.key:
        return RuleViolation(
            "kind",
            "discount_rate_mismatch",
            _("A discount line must have the rate of the line it discounts (%(rate)s)."),
            {"rate": before.rate.label_zh},
        )
    if -line.amount > before.amount:
        return RuleViolation(
            "kind",
            "discount_too_large",
            _("The discount %(discount)s is larger than the discounted amount %(amount)s."),
            {"discount": -line.amount, "amount": before.amount},
        )
    return None


def _invoice_violations(lines: Sequence[LineAmounts], totals: Totals) -> list[RuleViolation]:
    found = []
    expected = round_cents(sum((_exact_tax(line) for line in lines), ZERO))
    if abs(totals.tax - expected) > INVOICE_TAX_TOLERANCE:
        found.append(
            RuleViolation(
                "lines",
                "invoice_tax_tolerance",
                _(
                    "The total tax %(tax)s differs from the computed %(expected)s by more than "
                    "1.27. Leave line taxes empty to have them computed, or split the invoice."
                ),
                {"tax": totals.tax, "expected": expected},
            )
        )
    if totals.total > MAX_AMOUNT:
        found.append(
            RuleViolation(
                "lines",
                "total_too_large",
                _("The total %(total)s exceeds 999,999,999,999.99; split the invoice."),
                {"total": totals.total},
            )
        )
    if totals.total <= 0:
        found.append(
            RuleViolation(
                "lines",
                "total_not_positive",
                _("The total %(total)s must be positive; discounts cannot exceed the sales."),
                {"total": totals.total},
            )
        )
    return found


def _exact_tax(line: LineAmounts) -> Decimal:
    return line.exact_tax if line.exact_tax is not None else line.amount * line.rate.value
