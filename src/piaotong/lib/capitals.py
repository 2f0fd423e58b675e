"""Amounts in Chinese capitals (中文大写金额), as printed for 价税合计（大写）on an invoice.

Terms: capital numerals (大写数字) 零壹贰叁肆伍陆柒捌玖, units 拾佰仟 within a group of four
digits and 万亿 between groups, currency units 圆 (yuan; invoices print 圆, not 元), 角 (0.1)
and 分 (0.01), and 整 ("exactly") closing an amount with no 角 or 分.

Conventions, as printed by the 数电 platform and the accounting rules (会计基础工作规范) it
follows:

- 整 only when both 角 and 分 are zero: 123.00 → 壹佰贰拾叁圆整, 1001.50 → 壹仟零壹圆伍角.
- A zero 角 before a non-zero 分 is written 零: 10.05 → 壹拾圆零伍分.
- Amounts under one yuan start at their first non-zero unit: 0.50 → 伍角, 0.05 → 伍分;
  0 is 零圆整.
- A leading ten is 壹拾 (10 → 壹拾圆整), never a bare 拾: capitals exist to prevent alteration.
- Zeros inside the integer part collapse to one 零, and trailing zeros of the yuan part are
  dropped without a 零 before 圆: 100010 → 壹拾万零壹拾圆整, 1000.50 → 壹仟圆伍角.
- Negative amounts (red-letter invoices, 红字发票) are prefixed with （负数）, which is how
  red-letter invoices print the capital total.
- Up to 999,999,999,999.99 (`piaotong.lib.money.MAX_AMOUNT`), to the fen; anything else is a
  `RuleViolation` on field "amount".

>>> to_chinese_capitals(Decimal("1234.56"))
'壹仟贰佰叁拾肆圆伍角陆分'
>>> to_chinese_capitals(Decimal("-100"))
'（负数）壹佰圆整'
"""

from __future__ import annotations

from decimal import Decimal

from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation
from piaotong.lib.money import CENT, MAX_AMOUNT

DIGITS = "零壹贰叁肆伍陆柒捌玖"
NEGATIVE_PREFIX = "（负数）"
_PLACES = ("仟", "佰", "拾", "")
_GROUP_UNITS = ("亿", "万", "")


def to_chinese_capitals(amount: Decimal) -> str:
    """The amount in capitals as printed on an invoice (see the module's conventions)."""
    _check(amount)
    fen_total = int((abs(amount) * 100).to_integral_value())
    yuan, jiao, fen = fen_total // 100, fen_total // 10 % 10, fen_total % 10
    text = _yuan_part(yuan, jiao, fen) + _fraction_part(yuan, jiao, fen)
    return NEGATIVE_PREFIX + text if amount < 0 else text


def _check(amount: Decimal) -> None:
    if not amount.is_finite() or abs(amount) > MAX_AMOUNT:
        raise RuleViolation(
            "amount",
            "capitals_out_of_range",
            _("%(amount)s cannot be written in capitals: amounts go up to 999,999,999,999.99."),
            {"amount": amount},
        )
    if amount != amount.quantize(CENT):
        raise RuleViolation(
            "amount",
            "fractional_cents",
            _("%(amount)s has fractions of a fen; round it to two decimal places first."),
            {"amount": amount},
        )


def _yuan_part(yuan: int, jiao: int, fen: int) -> str:
    if yuan == 0:
        return "零圆" if jiao == fen == 0 else ""
    return _integer(yuan) + "圆"


def _fraction_part(yuan: int, jiao: int, fen: int) -> str:
    if jiao == fen == 0:
        return "整"
    if jiao == 0:
        # 零 marks the missing 角 only between yuan and fen; 0.05 is simply 伍分.
        return ("零" if yuan else "") + DIGITS[fen] + "分"
    return DIGITS[jiao] + "角" + (DIGITS[fen] + "分" if fen else "")


def _integer(value: int) -> str:
    """A positive integer below 10^12 in capitals, zeros collapsed.

    >>> _integer(100010), _integer(10000001), _integer(100000000)
    ('壹拾万零壹拾', '壹仟万零壹', '壹亿')
    """
    groups = (value // 10**8, value // 10**4 % 10**4, value % 10**4)
    text, zero_pending = "", False
    for group, unit in zip(groups, _GROUP_UNITS, strict=True):
        if group == 0:
            zero_pending = bool(text)
            continue
        if text and (zero_pending or group < 1000):
            text += "零"
        text += _group(group) + unit
        zero_pending = False
    return text


def _group(value: int) -> str:
    """A number from 1 to 9999 in capitals: inner zeros as one 零, trailing zeros dropped."""
    text, zero_pending = "", False
    for digit, place in zip(f"{value:04d}", _PLACES, strict=True):
        if digit == "0":
            zero_pending = bool(text)
            continue
        text += ("零" if zero_pending else "") + DIGITS[int(digit)] + place
        zero_pending = False
    return text
