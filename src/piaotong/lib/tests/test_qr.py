"""Invoice QR texts: composing and reading every variant, and naming the bad field."""

import base64
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import translation
from hypothesis import given
from hypothesis import strategies as st

from piaotong.lib.errors import RuleViolation
from piaotong.lib.invoice_numbers import compose_number
from piaotong.lib.qr import (
    SIGNED_FIELDS,
    QrData,
    check_hex,
    compose_digital_qr,
    compose_legacy_qr,
    compose_signed_payload,
    is_signed_payload,
    parse_qr,
    parse_signed_payload,
    signed_payload_message,
)
from piaotong.lib.regions import REGIONS
from piaotong.lib.signing import generate_private_key, public_key_bytes, sign, verify

TODAY = date(2026, 6, 30)
NUMBER = "26112000000000000042"
DIGITAL = compose_digital_qr("32", NUMBER, date(2026, 1, 5), Decimal("113.00"))
LEGACY = compose_legacy_qr(
    "04", "3100191330", "00012345", date(2019, 3, 17), Decimal("1000"), "12345678901234567890"
)


def refused(text: str, **kwargs) -> RuleViolation:
    with pytest.raises(RuleViolation) as raised:
        parse_qr(text, today=TODAY, **kwargs)
    return raised.value


def test_it_reads_a_digital_qr():
    assert parse_qr(DIGITAL, today=TODAY) == QrData(
        version="01",
        kind_code="32",
        invoice_code="",
        number=NUMBER,
        issue_date=date(2026, 1, 5),
        amount=Decimal("113.00"),
        check_code=check_hex(f"01,32,,{NUMBER},113.00,20260105,,"),
        is_digital=True,
    )


def test_it_reads_a_legacy_qr():
    data = parse_qr(LEGACY, today=TODAY)
    assert (data.kind_code, data.invoice_code, data.number, data.is_digital) == (
        "04",
        "3100191330",
        "00012345",
        False,
    )
    assert (data.amount, data.check_code, data.kind_label) == (
        Decimal("1000.00"),
        "12345678901234567890",
        "增值税普通发票",
    )


@pytest.mark.parametrize(
    "variant",
    [
        DIGITAL,
        DIGITAL.rstrip(","),
        DIGITAL.replace(",", "，"),
        " " + DIGITAL.replace(",", " , ") + "\n",
        DIGITAL.replace("26112", "２６１１２"),
        "\t" + DIGITAL.rstrip(",") + "\r\n",
    ],
)
def test_it_accepts_every_spelling_of_the_same_code(variant):
    assert parse_qr(variant, today=TODAY) == parse_qr(DIGITAL, today=TODAY)


def test_it_accepts_a_code_without_its_check():
    data = parse_qr(f"01,31,,{NUMBER},113.00,20260105,,", today=TODAY)
    assert (data.check_code, data.kind_label) == ("", "数电专票")


def test_it_reads_unknown_kinds_as_unknown():
    text = compose_digital_qr("51", NUMBER, date(2026, 1, 5), Decimal("1.00"))
    data = parse_qr(text, today=TODAY)
    assert (data.is_known_kind, data.kind_label) == (False, "未识别的票种")


def test_it_reads_a_legacy_special_invoice_without_check_code():
    text = "01,01,1100191130,12345678,500.00,20190317,,7F3A,"
    data = parse_qr(text, today=TODAY)
    assert (data.check_code, data.legacy_check, data.amount) == ("", "7F3A", Decimal("500.00"))


def test_it_does_not_recompute_a_legacy_codes_last_field():
    # The 税控 system's last field has no published meaning: any four hex digits pass.
    assert parse_qr(LEGACY[:-5] + "0000,", today=TODAY).legacy_check == "0000"


@pytest.mark.parametrize(
    ("text", "field", "code"),
    [
        ("", "qr", "qr_field_count"),
        ("01,32,,1,2", "qr", "qr_field_count"),
        (DIGITAL + "1,2,", "qr", "qr_field_count"),
        ("x" * 600, "qr", "qr_too_long"),
        (DIGITAL.replace("01,", "02,", 1), "version", "qr_version"),
        (DIGITAL.replace(",32,", ",3A,"), "kind_code", "qr_kind"),
        (DIGITAL.replace(",32,", ",320,"), "kind_code", "qr_kind"),
        (DIGITAL.replace(NUMBER, NUMBER[:-1]), "number", "number_length"),
        (DIGITAL.replace(NUMBER, "26992000000000000042"), "number", "unknown_region"),
        (DIGITAL.replace("113.00", "113.005"), "amount", "qr_amount_decimals"),
        (DIGITAL.replace("113.00", "1l3.00"), "amount", "qr_amount"),
        (DIGITAL.replace("113.00", ""), "amount", "qr_amount"),
        (DIGITAL.replace("20260105", "20261305"), "issue_date", "qr_date"),
        (DIGITAL.replace("20260105", "2026015"), "issue_date", "qr_date"),
        (DIGITAL.replace("20260105", "20270105"), "issue_date", "qr_future_date"),
        (DIGITAL.replace("20260105", "19900105"), "issue_date", "qr_date"),
        (
            DIGITAL.replace(",,", ",123,", 2).replace(",123,", ",,", 1),
            "check_code",
            "qr_digital_check_code",
        ),
        (DIGITAL[:-5] + "ZZZZ,", "check", "qr_check_shape"),
        (DIGITAL[:-5] + "0000,", "check", "qr_check_mismatch"),
        (DIGITAL.replace(",32,", ",04,"), "invoice_code", "qr_missing_code"),
        (LEGACY.replace("3100191330", "310019133"), "invoice_code", "legacy_code_format"),
        (LEGACY.replace("00012345", "0001234"), "number", "legacy_number_format"),
        (LEGACY.replace("12345678901234567890", "123456"), "check_code", "qr_check_code"),
        (LEGACY[:-5] + "12345,", "check", "qr_check_shape"),
    ],
)
def test_it_names_the_bad_field(text, field, code):
    violation = refused(text)
    assert (violation.field, violation.code) == (field, code), violation.text()


def test_it_refuses_a_misread_digit_of_a_digital_code():
    misread = DIGITAL.replace("113.00", "118.00")
    violation = refused(misread)
    assert violation.code == "qr_check_mismatch"
    assert parse_qr(misread, today=TODAY, verify_check=False).amount == Decimal("118.00")


def test_it_explains_in_both_languages():
    violation = refused(DIGITAL.replace("113.00", "113.005"))
    with translation.override("en"):
        assert "Field 5 (amount)" in violation.text()
    with translation.override("zh-hans"):
        assert "第 5 个字段" in violation.text()


def test_it_refuses_future_dates_against_shanghai_today_by_default():
    tomorrow = date.today() + timedelta(days=2)
    text = compose_digital_qr("32", NUMBER, tomorrow, Decimal("1.00"))
    with pytest.raises(RuleViolation) as raised:
        parse_qr(text)
    assert raised.value.code == "qr_future_date"


def test_it_refuses_to_compose_three_decimals():
    with pytest.raises(RuleViolation) as raised:
        compose_digital_qr("32", NUMBER, TODAY, Decimal("1.005"))
    assert raised.value.field == "amount"


amounts = st.decimals(
    min_value=Decimal("-999999999999.99"),
    max_value=Decimal("999999999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
dates = st.dates(min_value=date(1994, 1, 1), max_value=TODAY)
numbers = st.builds(
    compose_number,
    st.integers(min_value=2000, max_value=2099),
    st.sampled_from([code for code in REGIONS if code != "00"]),
    st.sampled_from("0123456789"),
    st.integers(min_value=1, max_value=10**15 - 1),
)


@given(st.sampled_from(["31", "32", "51"]), numbers, dates, amounts)
def test_it_round_trips_every_digital_code(kind, number, issued, amount):
    data = parse_qr(compose_digital_qr(kind, number, issued, amount), today=TODAY)
    assert (data.kind_code, data.number, data.issue_date, data.amount) == (
        kind,
        number,
        issued,
        amount,
    )


legacy_codes = st.one_of(
    st.from_regex(r"\A[1-6][0-9]{9}\Z"),
    st.from_regex(r"\A0[0-9]{11}\Z"),
)


@given(
    st.sampled_from(["01", "04", "08", "10", "11", "14"]),
    legacy_codes,
    st.from_regex(r"\A[0-9]{8}\Z"),
    dates,
    amounts,
    st.one_of(st.just(""), st.from_regex(r"\A[0-9]{20}\Z")),
)
def test_it_round_trips_every_legacy_code(kind, code, number, issued, amount, check_code):
    text = compose_legacy_qr(kind, code, number, issued, amount, check_code)
    data = parse_qr(text, today=TODAY)
    assert (data.invoice_code, data.number, data.issue_date, data.amount, data.check_code) == (
        code,
        number,
        issued,
        amount,
        check_code,
    )
    assert not data.is_digital


@given(numbers, dates, amounts, st.data())
def test_it_catches_every_single_changed_character(number, issued, amount, data):
    text = compose_digital_qr("32", number, issued, amount)
    head = text[: text.rindex(",", 0, -1) - 1]
    position = data.draw(st.integers(min_value=0, max_value=len(head) - 1))
    if not head[position].isdigit():
        return
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != head[position]]))
    changed = text[:position] + digit + text[position + 1 :]
    with pytest.raises(RuleViolation):
        parse_qr(changed, today=TODAY)


@given(st.text(max_size=200))
def test_it_answers_any_text_with_data_or_a_violation(text):
    answers = []
    try:
        answers.append(parse_qr(text, today=TODAY))
    except RuleViolation as violation:
        answers.append(violation.text())
    assert answers[0]


# --- signed payload --------------------------------------------------------------------------

FACTS = {
    "number": NUMBER,
    "issue_date": "2026-01-05",
    "seller_tax_id": "91110000MA01ABCD1X",
    "buyer_tax_id": "",
    "total_amount": "100.00",
    "total_tax": "13.00",
    "total_with_tax": "113.00",
    "payload_hash": "ab" * 32,
}


def test_it_signs_and_reads_back_the_offline_payload():
    key = generate_private_key()
    signature = sign(key, signed_payload_message(FACTS))
    text = compose_signed_payload(FACTS, "0123456789abcdef", signature)
    assert is_signed_payload(text) and not is_signed_payload(DIGITAL)
    fields, key_id, read_signature = parse_signed_payload(text)
    assert (fields, key_id, read_signature) == (FACTS, "0123456789abcdef", signature)
    assert verify(public_key_bytes(key), signed_payload_message(fields), read_signature)
    altered, _, _ = parse_signed_payload(text.replace("113.00", "118.00"))
    assert not verify(public_key_bytes(key), signed_payload_message(altered), read_signature)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"number": "123"}, "number"),
        ({"issue_date": "20260105"}, "issue_date"),
        ({"seller_tax_id": "91110000ma01abcd1x"}, "seller_tax_id"),
        ({"total_tax": "13.0"}, "total_tax"),
        ({"payload_hash": "xyz"}, "payload_hash"),
    ],
)
def test_it_refuses_malformed_signed_fields(change, field):
    with pytest.raises(RuleViolation) as raised:
        compose_signed_payload({**FACTS, **change}, "0123456789abcdef", "A" * 86 + "==")
    assert raised.value.field == field


@pytest.mark.parametrize(
    "text",
    [
        "PTSIG1,1,2",
        DIGITAL,
        ",".join(["PTSIG1", *FACTS.values(), "0123456789abcdef", "bm90IGEgc2lnbmF0dXJl"]),
        ",".join(["PTSIG1", *FACTS.values(), "0123456789ABCDEF", "A" * 86 + "=="]),
    ],
)
def test_it_refuses_damaged_signed_texts(text):
    with pytest.raises(RuleViolation):
        parse_signed_payload(text)


def test_the_signed_fields_are_the_documented_ones():
    assert set(SIGNED_FIELDS) == set(FACTS)
    assert base64.b64decode("A" * 86 + "==") == bytes(64)
