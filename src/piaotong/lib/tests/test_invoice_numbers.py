"""20-digit 数电 invoice numbers: composing, parsing and the reasons a number is refused."""

from datetime import date

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from piaotong.lib.errors import RuleViolation
from piaotong.lib.invoice_numbers import (
    MAX_SEQUENCE,
    DigitalInvoiceNumber,
    compose_number,
    is_valid_number,
    parse_number,
)
from piaotong.lib.regions import REGIONS


def refused(text: str, **kwargs: date) -> RuleViolation:
    with pytest.raises(RuleViolation) as raised:
        parse_number(text, **kwargs)
    return raised.value


@pytest.mark.parametrize(
    ("parts", "number"),
    [
        ((2026, "11", "2", 1), "26112000000000000001"),
        ((2024, "44", "9", 123456789), "24449000000123456789"),
        ((2000, "65", "0", MAX_SEQUENCE), "00650999999999999999"),
        ((2099, "31", "7", 10), "99317000000000000010"),
    ],
)
def test_it_composes_and_parses_numbers(parts, number):
    assert compose_number(*parts) == number
    assert parse_number(number) == DigitalInvoiceNumber(*parts)


@pytest.mark.parametrize(
    ("parts", "field", "code"),
    [
        ((1999, "11", "2", 1), "year", "year_range"),
        ((2100, "11", "2", 1), "year", "year_range"),
        ((26, "11", "2", 1), "year", "year_range"),
        ((2026, "99", "2", 1), "region", "unknown_region"),
        ((2026, "00", "2", 1), "region", "unknown_region"),
        ((2026, "1", "2", 1), "region", "unknown_region"),
        ((2026, "11", "", 1), "channel", "channel_digit"),
        ((2026, "11", "22", 1), "channel", "channel_digit"),
        ((2026, "11", "a", 1), "channel", "channel_digit"),
        ((2026, "11", "２", 1), "channel", "channel_digit"),
        ((2026, "11", "2", 0), "sequence", "sequence_range"),
        ((2026, "11", "2", -5), "sequence", "sequence_range"),
        ((2026, "11", "2", MAX_SEQUENCE + 1), "sequence", "sequence_range"),
    ],
)
def test_it_refuses_parts_that_do_not_fit(parts, field, code):
    with pytest.raises(RuleViolation) as raised:
        compose_number(*parts)
    assert (raised.value.field, raised.value.code) == (field, code)


provinces = st.sampled_from([code for code in REGIONS if code != "00"])


@given(
    st.integers(min_value=2000, max_value=2099),
    provinces,
    st.sampled_from("0123456789"),
    st.integers(min_value=1, max_value=MAX_SEQUENCE),
)
def test_it_round_trips_every_valid_number(year, region, channel, sequence):
    number = compose_number(year, region, channel, sequence)
    assert len(number) == 20
    assert number.isdigit()
    parsed = parse_number(number)
    assert (parsed.year, parsed.region, parsed.channel, parsed.sequence) == (
        year,
        region,
        channel,
        sequence,
    )
    assert str(parsed) == number


def test_it_accepts_surrounding_spaces_and_full_width_digits():
    full_width = "２６１１２" + "０" * 12 + "４２１"
    assert str(parse_number(f"\u3000{full_width}\n")) == "26112000000000000421"


@pytest.mark.parametrize(
    ("text", "length"), [("", 0), ("2611200000000000042", 19), ("261120000000000000421", 21)]
)
def test_it_says_how_many_digits_were_given(text, length):
    found = refused(text)
    assert (found.field, found.code, found.params) == (
        "number",
        "number_length",
        {"length": length},
    )
    with translation.override("en"):
        assert f"{length} characters" in found.text()
        assert "20 digits" in found.text()


@pytest.mark.parametrize(
    ("text", "position", "char"),
    [
        ("2611200000000000004X", 20, "X"),
        ("26-11200000000000042", 3, "-"),
        ("2611 200000000000042", 5, " "),
    ],
)
def test_it_names_the_first_character_that_is_not_a_digit(text, position, char):
    found = refused(text)
    assert (found.code, found.params) == ("number_not_digit", {"position": position, "char": char})


def test_it_refuses_an_unknown_region():
    found = refused("26992000000000000042")
    assert (found.code, found.params) == ("unknown_region", {"region": "99"})
    assert refused("26002000000000000042").code == "unknown_region"


def test_it_refuses_sequence_zero():
    assert refused("26112000000000000000").code == "zero_sequence"


def test_it_refuses_a_year_after_today_only_when_told_today():
    number = "27112000000000000042"
    assert parse_number(number).year == 2027
    assert parse_number(number, today=date(2027, 1, 1)).year == 2027
    found = refused(number, today=date(2026, 12, 31))
    assert (found.code, found.params) == ("future_year", {"year": 2027})


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("26112000000000000042", True),
        (" 24449000000123456789 ", True),
        ("2611200000000000004", False),
        ("26992000000000000042", False),
        ("26112000000000000000", False),
        ("abcdefghijklmnopqrst", False),
    ],
)
def test_it_tells_whether_a_number_is_valid(text, valid):
    assert is_valid_number(text) is valid


def test_it_gives_the_region_of_a_number():
    region = parse_number("26442000000000000001").region_info
    assert region is not None
    assert region.name_en == "Guangdong"


def test_it_cannot_be_built_with_invalid_parts():
    with pytest.raises(RuleViolation):
        DigitalInvoiceNumber(2026, "11", "2", 0)
