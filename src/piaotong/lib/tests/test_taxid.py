"""Taxpayer identifiers: USCC with both check characters, older ids, resident ids."""

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric, uscc

from piaotong.lib.errors import RuleViolation
from piaotong.lib.regions import REGIONS
from piaotong.lib.taxid import (
    USCC_ALPHABET,
    compose_uscc,
    is_valid_uscc,
    org_code_check_char,
    validate_resident_id,
    validate_taxpayer_id,
    validate_uscc,
)

# A real, public credit code (also python-stdnum's example).
KNOWN_USCC = "91110000600037341L"
KNOWN_RESIDENT_ID = "11010519491231002X"  # the example of GB 11643


def raw_uscc(first16: str) -> str:
    """Both check characters appended, without any validation (to build broken codes)."""
    body = first16 + org_code_check_char(first16[8:16])
    return body + uscc.calc_check_digit(body)


def resident_id(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "0")


def refused(func: Callable[..., str], text: str, **kwargs: Any) -> RuleViolation:
    with pytest.raises(RuleViolation) as raised:
        func(text, **kwargs)
    return raised.value


# --- USCC ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        KNOWN_USCC,
        " 91110000600037341l ",
        "9111 0000 6000 3734 1L",
        "91110000-600037341-L",
        "９１１１００００６０００３７３４１Ｌ",
    ],
)
def test_it_normalizes_a_valid_uscc(text):
    assert validate_uscc(text) == KNOWN_USCC
    assert is_valid_uscc(text)


@pytest.mark.parametrize(
    ("text", "length"), [("", 0), ("9111000060003734", 16), (KNOWN_USCC + "0", 19)]
)
def test_it_refuses_a_uscc_of_the_wrong_length(text, length):
    found = refused(validate_uscc, text)
    assert (found.field, found.code, found.params) == ("tax_id", "uscc_length", {"length": length})


@pytest.mark.parametrize("letter", ["I", "O", "Z", "S", "V", "*", "é"])
def test_it_names_a_character_outside_the_uscc_alphabet(letter):
    text = KNOWN_USCC[:9] + letter + KNOWN_USCC[10:]
    found = refused(validate_uscc, text)
    assert (found.code, found.params) == (
        "uscc_character",
        {"position": 10, "char": letter.upper()},
    )


def test_it_says_the_area_must_be_digits():
    found = refused(validate_uscc, "9111A000600037341L")
    assert (found.code, found.params) == ("uscc_character", {"position": 5, "char": "A"})
    with translation.override("en"):
        assert "administrative area" in found.text()


def test_it_refuses_an_unknown_province_in_the_area():
    found = refused(validate_uscc, raw_uscc("9199000060003734"))
    assert (found.code, found.params) == ("uscc_region", {"region": "99"})


def test_it_accepts_organisations_registered_at_central_level():
    assert validate_uscc(raw_uscc("1110000000001312")) == raw_uscc("1110000000001312")


def test_it_accepts_registering_authorities_that_are_letters():
    # N: rural collective economic organisations; python-stdnum refuses such codes.
    code = compose_uscc("N", "2", "440103", "A1B2C3D4")
    assert validate_uscc(code) == code
    assert not uscc.is_valid(code)


def test_it_refuses_a_wrong_check_character_without_revealing_the_right_one():
    found = refused(validate_uscc, KNOWN_USCC[:17] + "M")
    assert (found.field, found.code, found.params) == ("tax_id", "uscc_check_char", {})
    with translation.override("en"):
        assert "L" not in found.text()


def test_it_catches_a_wrong_organisation_code_check_that_stdnum_misses():
    body = KNOWN_USCC[:16] + "2"
    code = body + uscc.calc_check_digit(body)
    assert uscc.is_valid(code)
    found = refused(validate_uscc, code)
    assert found.code == "org_code_check_char"


@pytest.mark.parametrize(
    ("body", "check"),
    [("60003734", "1"), ("D2143569", "X"), ("00000000", "0"), ("12345678", "8")],
)
def test_it_computes_organisation_code_check_characters(body, check):
    assert org_code_check_char(body) == check


def test_it_reports_violations_on_the_field_it_is_given():
    assert refused(validate_uscc, "x", field="buyer_tax_id").field == "buyer_tax_id"


alphabet = st.sampled_from(USCC_ALPHABET)
provinces = st.sampled_from([code for code in REGIONS if code != "00"])
uscc_parts = st.tuples(
    alphabet,
    alphabet,
    st.builds(lambda p, rest: p + rest, provinces, st.from_regex(r"[0-9]{4}", fullmatch=True)),
    st.text(alphabet=USCC_ALPHABET, min_size=8, max_size=8),
)


@given(uscc_parts)
def test_it_composes_codes_it_then_accepts(parts):
    code = compose_uscc(*parts)
    assert validate_uscc(code) == code
    assert code[17] == uscc.calc_check_digit(code[:17])


@given(uscc_parts, st.integers(min_value=0, max_value=17), alphabet)
def test_it_catches_every_single_character_typo(parts, position, char):
    code = compose_uscc(*parts)
    typo = code[:position] + char + code[position + 1 :]
    if typo != code:
        assert not is_valid_uscc(typo)


@pytest.mark.parametrize(
    "parts",
    [
        ("91", "1", "110000", "60003734"),
        ("9", "1", "11000", "60003734"),
        ("9", "1", "110000", "6000373I"),
    ],
)
def test_it_refuses_to_compose_from_bad_parts(parts):
    with pytest.raises(RuleViolation) as raised:
        compose_uscc(*parts)
    assert raised.value.code == "uscc_parts"


# --- Resident ids --------------------------------------------------------------------------


def test_it_accepts_a_resident_id_with_a_final_x():
    assert validate_resident_id(" 11010519491231002x ") == KNOWN_RESIDENT_ID


def test_it_accepts_residence_permits_of_hong_kong_macao_and_taiwan_residents():
    permit = resident_id("81000019900101001")
    assert validate_resident_id(permit) == permit


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1101051949123100", "resident_id_format"),
        ("11010519491231002Y", "resident_id_format"),
        ("X10105194912310020", "resident_id_format"),
        (resident_id("99010519491231002"), "resident_id_region"),
        (resident_id("11010519491331002"), "resident_id_birth_date"),
        (resident_id("11010518991231002"), "resident_id_birth_date"),
        (resident_id("11010520300101002"), "resident_id_birth_date"),
        ("110105194912310021", "resident_id_check_char"),
    ],
)
def test_it_refuses_impossible_resident_ids(text, code):
    assert refused(validate_resident_id, text).code == code


def test_it_refuses_a_birth_date_after_today():
    born_today = resident_id("11010520260301002")
    assert validate_resident_id(born_today, today=date(2026, 3, 1)) == born_today
    found = refused(validate_resident_id, born_today, today=date(2026, 2, 28))
    assert found.code == "resident_id_birth_date"


# --- Taxpayer ids --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [KNOWN_USCC, "110108600037341", "11010819491231002", "11010519491231002X01", "11010560003734A"],
)
def test_it_accepts_every_taxpayer_id_format(text):
    assert validate_taxpayer_id(text.lower()) == text


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1101086000373", "taxpayer_id_length"),
        ("1101086000373411", "taxpayer_id_length"),
        ("1101086000373412345", "taxpayer_id_length"),
        ("11A108600037341", "taxpayer_id_format"),
        ("1101081949123100A", "taxpayer_id_format"),
        ("11010519491231002X0A", "taxpayer_id_format"),
    ],
)
def test_it_refuses_malformed_taxpayer_ids(text, code):
    assert refused(validate_taxpayer_id, text).code == code


def test_it_takes_a_resident_id_as_taxpayer_id_only_when_allowed():
    assert validate_taxpayer_id(KNOWN_RESIDENT_ID, allow_resident_id=True) == KNOWN_RESIDENT_ID
    assert refused(validate_taxpayer_id, KNOWN_RESIDENT_ID).code.startswith("uscc_")


def test_it_reports_the_uscc_problem_of_an_18_character_id_that_is_neither():
    found = refused(validate_taxpayer_id, KNOWN_USCC[:17] + "M", allow_resident_id=True)
    assert found.code == "uscc_check_char"


def test_it_refuses_digits_of_other_scripts():
    arabic_zero = "\u0660"
    assert refused(validate_resident_id, arabic_zero + KNOWN_RESIDENT_ID[1:]).code == (
        "resident_id_format"
    )
    assert refused(validate_uscc, KNOWN_USCC[:4] + arabic_zero + KNOWN_USCC[5:]).code == (
        "uscc_character"
    )
    with pytest.raises(RuleViolation):
        compose_uscc("9", "1", "11000" + arabic_zero, "60003734")
