"""Legacy 发票代码 + 发票号码: decoding the kind, area and year, and degrading to unknown."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piaotong.lib.errors import RuleViolation
from piaotong.lib.legacy_numbers import KINDS, decode_legacy

NUMBER = "01234567"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("1100191130", "special"),
        ("1100191530", "special"),
        ("1100191330", "ordinary"),
        ("1100191630", "ordinary"),
        ("1100191230", "freight_special"),
        ("1100191730", "freight_special"),
        ("1100191430", "unknown"),
        ("1100191030", "unknown"),
        ("011001900111", "electronic_ordinary"),
        ("011001900112", "toll_electronic_ordinary"),
        ("011001900113", "electronic_special"),
        ("011001900106", "roll"),
        ("011001900107", "roll"),
        ("011001900104", "folded_ordinary"),
        ("011001900105", "folded_ordinary"),
        ("011001900199", "unknown"),
    ],
)
def test_it_decodes_the_kind(code, kind):
    info = decode_legacy(code, NUMBER)
    assert info.kind == kind
    assert (info.kind_label_zh, info.kind_label_en) == (KINDS[kind].label_zh, KINDS[kind].label_en)


@pytest.mark.parametrize(
    ("kind", "needs_check_code"),
    [
        ("special", False),
        ("freight_special", False),
        ("electronic_special", False),
        ("ordinary", True),
        ("electronic_ordinary", True),
        ("toll_electronic_ordinary", True),
        ("roll", True),
        ("folded_ordinary", True),
        ("unknown", True),
    ],
)
def test_it_asks_for_the_check_code_only_for_the_ordinary_family(kind, needs_check_code):
    assert KINDS[kind].needs_check_code is needs_check_code


def test_it_decodes_area_region_and_year_of_a_ten_digit_code():
    info = decode_legacy("4403181320", NUMBER)
    assert (info.area, info.year, info.code_length, info.needs_check_code) == (
        "4403",
        2018,
        10,
        True,
    )
    assert info.region is not None
    assert info.region.code == "44"


def test_it_decodes_area_region_and_year_of_a_twelve_digit_code():
    info = decode_legacy("032001700111", "00000001")
    assert (info.area, info.year, info.code_length) == ("3200", 2017, 12)
    assert info.region is not None
    assert info.region.name_en == "Jiangsu"


@pytest.mark.parametrize(
    ("code", "year"),
    [("1100981130", 1998), ("1100901130", 1990), ("1100891130", 2089), ("1100001130", 2000)],
)
def test_it_places_two_digit_years_in_the_right_century(code, year):
    assert decode_legacy(code, NUMBER).year == year


@pytest.mark.parametrize("code", ["9900191130", "0000191130", "099001900111", "144031900111"])
def test_it_leaves_area_and_year_empty_when_the_layout_is_not_recognised(code):
    info = decode_legacy(code, NUMBER)
    assert (info.area, info.region, info.year) == ("", None, None)


def test_it_accepts_full_width_digits_and_spaces():
    info = decode_legacy(" １１００１９１１３０ ", "０１２３４５６７")
    assert (info.code, info.number, info.kind) == ("1100191130", "01234567", "special")


@pytest.mark.parametrize(
    ("code", "number", "field"),
    [
        ("110019113", NUMBER, "code"),
        ("11001911300", NUMBER, "code"),
        ("0110019001111", NUMBER, "code"),
        ("11001911A0", NUMBER, "code"),
        ("", NUMBER, "code"),
        ("1100191130", "1234567", "number"),
        ("1100191130", "123456789", "number"),
        ("1100191130", "1234567X", "number"),
        ("1100191130", "١٢٣٤٥٦٧٨", "number"),
    ],
)
def test_it_refuses_codes_and_numbers_of_the_wrong_shape(code, number, field):
    with pytest.raises(RuleViolation) as raised:
        decode_legacy(code, number)
    assert (raised.value.field, raised.value.code) == (field, f"legacy_{field}_format")


@given(
    st.one_of(
        st.from_regex(r"[0-9]{10}", fullmatch=True), st.from_regex(r"[0-9]{12}", fullmatch=True)
    ),
    st.from_regex(r"[0-9]{8}", fullmatch=True),
)
def test_it_decodes_any_code_of_the_right_shape_without_refusing(code, number):
    info = decode_legacy(code, number)
    assert info.kind in KINDS
    assert info.needs_check_code is KINDS[info.kind].needs_check_code
    assert (info.area == "") is (info.region is None) is (info.year is None)
