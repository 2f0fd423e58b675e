"""Amounts in Chinese capitals, as printed for 价税合计（大写）."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piaotong.lib.capitals import NEGATIVE_PREFIX, to_chinese_capitals
from piaotong.lib.errors import RuleViolation

D = Decimal


@pytest.mark.parametrize(
    ("amount", "capitals"),
    [
        ("0", "零圆整"),
        ("0.00", "零圆整"),
        ("0.01", "壹分"),
        ("0.05", "伍分"),
        ("0.10", "壹角"),
        ("0.50", "伍角"),
        ("0.55", "伍角伍分"),
        ("1", "壹圆整"),
        ("1.5", "壹圆伍角"),
        ("2.02", "贰圆零贰分"),
        ("10", "壹拾圆整"),
        ("10.05", "壹拾圆零伍分"),
        ("10.50", "壹拾圆伍角"),
        ("11", "壹拾壹圆整"),
        ("20", "贰拾圆整"),
        ("100", "壹佰圆整"),
        ("100.01", "壹佰圆零壹分"),
        ("101", "壹佰零壹圆整"),
        ("110", "壹佰壹拾圆整"),
        ("123", "壹佰贰拾叁圆整"),
        ("1000.50", "壹仟圆伍角"),
        ("1001.50", "壹仟零壹圆伍角"),
        ("1010", "壹仟零壹拾圆整"),
        ("1100", "壹仟壹佰圆整"),
        ("1234.56", "壹仟贰佰叁拾肆圆伍角陆分"),
        ("1680.32", "壹仟陆佰捌拾圆叁角贰分"),
        ("10000", "壹万圆整"),
        ("10001", "壹万零壹圆整"),
        ("10010", "壹万零壹拾圆整"),
        ("10100", "壹万零壹佰圆整"),
        ("11000", "壹万壹仟圆整"),
        ("100000", "壹拾万圆整"),
        ("100010", "壹拾万零壹拾圆整"),
        ("200000.20", "贰拾万圆贰角"),
        ("1000000", "壹佰万圆整"),
        ("1010000", "壹佰零壹万圆整"),
        ("10000001", "壹仟万零壹圆整"),
        ("10001000", "壹仟万壹仟圆整"),
        ("100000000", "壹亿圆整"),
        ("100000001", "壹亿零壹圆整"),
        ("100010000", "壹亿零壹万圆整"),
        ("101000000", "壹亿零壹佰万圆整"),
        ("110000000", "壹亿壹仟万圆整"),
        ("1000000000", "壹拾亿圆整"),
        ("100000000000", "壹仟亿圆整"),
        ("100000000000.01", "壹仟亿圆零壹分"),
        ("203040506070.80", "贰仟零叁拾亿肆仟零伍拾万陆仟零柒拾圆捌角"),
        (
            "999999999999.99",
            "玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖圆玖角玖分",
        ),
    ],
)
def test_it_writes_amounts_as_invoices_print_them(amount, capitals):
    assert to_chinese_capitals(D(amount)) == capitals


@pytest.mark.parametrize(
    ("amount", "capitals"),
    [("-0.05", "（负数）伍分"), ("-113", "（负数）壹佰壹拾叁圆整"), ("-0.00", "零圆整")],
)
def test_it_marks_red_letter_amounts_as_negative(amount, capitals):
    assert to_chinese_capitals(D(amount)) == capitals


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("1000000000000.00", "capitals_out_of_range"),
        ("-1000000000000", "capitals_out_of_range"),
        ("NaN", "capitals_out_of_range"),
        ("Infinity", "capitals_out_of_range"),
        ("0.001", "fractional_cents"),
        ("12.345", "fractional_cents"),
    ],
)
def test_it_refuses_what_an_invoice_cannot_carry(amount, code):
    with pytest.raises(RuleViolation) as raised:
        to_chinese_capitals(D(amount))
    assert (raised.value.field, raised.value.code) == ("amount", code)


def read_capitals(text: str) -> Decimal:
    """An independent reader of capitals, to check the writer against."""
    digits = {char: value for value, char in enumerate("零壹贰叁肆伍陆柒捌玖")}
    places = {"拾": 10, "佰": 100, "仟": 1000}
    fractions = {"角": D("0.1"), "分": D("0.01")}
    body = text.removeprefix(NEGATIVE_PREFIX)
    yi = wan = section = digit = 0
    value = D(0)
    for char in body:
        if char in digits:
            digit = digits[char]
        elif char in places:
            section, digit = section + digit * places[char], 0
        elif char == "万":
            wan, section, digit = section + digit, 0, 0
        elif char == "亿":
            yi, wan, section, digit = wan * 10**4 + section + digit, 0, 0, 0
        elif char == "圆":
            value += yi * 10**8 + wan * 10**4 + section + digit
            yi = wan = section = digit = 0
        elif char in fractions:
            value, digit = value + digit * fractions[char], 0
    return -value if text.startswith(NEGATIVE_PREFIX) else value


amounts = st.integers(min_value=-99_999_999_999_999, max_value=99_999_999_999_999).map(
    lambda fen: D(fen).scaleb(-2)
)


@given(amounts)
def test_it_reads_back_to_the_same_amount(amount):
    assert read_capitals(to_chinese_capitals(amount)) == amount


@given(amounts)
def test_it_never_writes_a_double_or_dangling_zero(amount):
    text = to_chinese_capitals(amount).removeprefix(NEGATIVE_PREFIX)
    assert "零零" not in text
    assert text == "零圆整" or not text.startswith("零")
    assert "零圆" not in text or text == "零圆整"
    assert not text.endswith("零")


@given(amounts)
def test_it_closes_with_zheng_exactly_when_there_are_no_jiao_or_fen(amount):
    assert to_chinese_capitals(amount).endswith("整") == (amount == amount.to_integral_value())


@given(st.integers(min_value=10, max_value=19))
def test_it_writes_a_leading_ten_as_yi_shi(yuan):
    assert to_chinese_capitals(D(yuan)).startswith("壹拾")
