"""The input rules of 查验 (china-einvoice.md §3) and the comparison, without a database."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.verification.limits import (
    ClientPolicy,
    daily_refused,
    decide_client,
    window_start,
)
from piaotong.verification.rules import (
    PRE_TAX_TYPED,
    TOTAL_TYPED,
    Record,
    compare_digital,
    compare_document,
    compare_legacy,
    digital_claim,
    legacy_claim,
    parse_amount,
    parse_date,
)

TODAY = date(2026, 11, 28)
NUMBER = "26112000000000000042"
RECORD = Record(
    NUMBER,
    date(2026, 11, 20),
    "digital_special",
    Decimal("1000.00"),
    Decimal("130.00"),
    Decimal("1130.00"),
    seller_tax_id="91110108MA01TEXT0X",
    buyer_tax_id="91310115MA1TEXT20X",
    seller_name="北京测试科技有限公司",
    buyer_name="上海测试贸易有限公司",
)


def codes(error: RuleViolation | RuleViolations) -> dict[str, str]:
    violations = error.violations if isinstance(error, RuleViolations) else [error]
    return {v.field: v.code for v in violations}


# --- 数电票: number + date + tax-inclusive total ---------------------------------------------


def test_it_accepts_the_three_digital_inputs_as_people_type_them() -> None:
    claim = digital_claim(
        " ２６１１２０００００００００００００４２ ", "2026/11/20", "￥1,130", TODAY
    )
    assert (claim.number, claim.issue_date, claim.total_with_tax) == (
        NUMBER,
        date(2026, 11, 20),
        Decimal("1130.00"),
    )


def test_it_reports_every_bad_digital_input_at_once() -> None:
    with pytest.raises(RuleViolations) as caught:
        digital_claim("2611200000000000004", "2026-13-01", "abc", TODAY)
    assert codes(caught.value) == {
        "number": "number_length",
        "issue_date": "date_format",
        "total_with_tax": "amount_format",
    }


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("total_with_tax", "1130.005", "amount_decimals"),
        ("total_with_tax", "", "required"),
        ("total_with_tax", "1e5", "amount_format"),
        ("issue_date", "2026-11-29", "date_in_future"),
        ("issue_date", "2021-11-27", "too_old"),
        ("issue_date", "", "required"),
        ("number", "26992000000000000042", "unknown_region"),
        ("number", "27112000000000000042", "future_year"),
        ("number", "2611200000000000004X", "number_not_digit"),
    ],
)
def test_it_refuses_each_bad_digital_input_with_its_code(field: str, value: str, code: str) -> None:
    inputs = {"number": NUMBER, "issue_date": "2026-11-20", "total_with_tax": "1130"}
    inputs[field] = value
    with pytest.raises(RuleViolation) as caught:
        digital_claim(inputs["number"], inputs["issue_date"], inputs["total_with_tax"], TODAY)
    assert codes(caught.value) == {field: code}


def test_it_accepts_an_invoice_issued_exactly_five_years_ago() -> None:
    assert digital_claim(NUMBER, "2021-11-28", "1", TODAY).issue_date == date(2021, 11, 28)


def test_it_matches_when_date_and_total_agree() -> None:
    claim = digital_claim(NUMBER, "20261120", "1130.00", TODAY)
    assert compare_digital(claim, RECORD).matches


def test_it_names_the_field_that_differs() -> None:
    claim = digital_claim(NUMBER, "2026-11-21", "1130.00", TODAY)
    assert compare_digital(claim, RECORD).differing == ("issue_date",)


def test_it_detects_the_pre_tax_amount_typed_for_a_digital_invoice() -> None:
    claim = digital_claim(NUMBER, "2026-11-20", "1000", TODAY)
    comparison = compare_digital(claim, RECORD)
    assert comparison.differing == ("total_with_tax",)
    assert comparison.hints == (PRE_TAX_TYPED,)


def test_it_gives_no_pre_tax_hint_for_another_wrong_amount() -> None:
    claim = digital_claim(NUMBER, "2026-11-20", "999", TODAY)
    assert compare_digital(claim, RECORD).hints == ()


# --- Legacy: code + number + date + amount or check code --------------------------------------


def test_it_asks_a_special_invoice_for_the_amount_excluding_tax() -> None:
    with pytest.raises(RuleViolation) as caught:
        legacy_claim("1100191130", "12345678", "2026-11-20", "", "123456", TODAY)
    assert codes(caught.value) == {"amount": "required"}


def test_it_asks_an_ordinary_invoice_for_the_check_code_tail() -> None:
    with pytest.raises(RuleViolation) as caught:
        legacy_claim("011002100111", "00000001", "2026-11-20", "100", "", TODAY)
    assert codes(caught.value) == {"check_code": "check_code_format"}


def test_it_takes_the_last_six_digits_of_a_full_check_code() -> None:
    claim = legacy_claim(
        "011002100111", "00000001", "2026-11-20", "", "12345678901234567890", TODAY
    )
    assert claim.check_code_tail == "567890"
    assert claim.key == "011002100111:00000001"


def test_it_refuses_bad_legacy_code_and_number_together() -> None:
    with pytest.raises(RuleViolations) as caught:
        legacy_claim("11001911", "1234567", "2026-11-20", "1", "", TODAY)
    assert codes(caught.value) == {"code": "legacy_code_format", "number": "legacy_number_format"}


def test_it_compares_a_legacy_special_invoice_by_amount_and_hints_at_the_total() -> None:
    claim = legacy_claim("1100191130", "12345678", "2026-11-20", "1130.00", "", TODAY)
    record = Record("12345678", date(2026, 11, 20), "special", *map(Decimal, RECORD_AMOUNTS))
    comparison = compare_legacy(claim, record)
    assert comparison.differing == ("amount",)
    assert comparison.hints == (TOTAL_TYPED,)


RECORD_AMOUNTS = ("1000.00", "130.00", "1130.00")


def test_it_compares_a_legacy_ordinary_invoice_by_check_code() -> None:
    claim = legacy_claim("011002100111", "00000001", "2026-11-20", "", "567890", TODAY)
    record = Record(
        "00000001",
        date(2026, 11, 20),
        "electronic_ordinary",
        Decimal("1000.00"),
        Decimal("130.00"),
        Decimal("1130.00"),
        check_code="12345678901234567890",
    )
    assert compare_legacy(claim, record).matches
    wrong = legacy_claim("011002100111", "00000001", "2026-11-20", "", "567891", TODAY)
    assert compare_legacy(wrong, record).differing == ("check_code",)


# --- Documents ------------------------------------------------------------------------------


def test_it_names_every_field_a_document_states_differently() -> None:
    stated = {
        "number": NUMBER,
        "issue_date": "2026-11-20",
        "seller_tax_id": RECORD.seller_tax_id,
        "buyer_tax_id": RECORD.buyer_tax_id,
        "total_amount": "1000.00",
        "total_tax": "130",
        "total_with_tax": "1131.00",
        "buyer_name": "上海假冒贸易有限公司",
    }
    assert compare_document(stated, RECORD) == ("buyer_name", "total_with_tax")


def test_it_treats_an_unparseable_document_amount_as_different() -> None:
    assert compare_document({"total_tax": "13O.00"}, RECORD) == ("total_tax",)


# --- Amounts and dates -----------------------------------------------------------------------


def test_it_allows_negative_amounts_of_red_letter_invoices() -> None:
    assert parse_amount("total_with_tax", "-1,130.00") == Decimal("-1130.00")


def test_it_reads_chinese_dates() -> None:
    assert parse_date("issue_date", "2026年1月2日") == date(2026, 1, 2)


# --- Limits -----------------------------------------------------------------------------------


def test_it_refuses_the_sixth_check_of_a_day() -> None:
    assert [daily_refused(count, 5) for count in range(1, 7)] == [False] * 5 + [True]


def test_it_throttles_a_client_over_the_rate_until_the_minute_ends() -> None:
    policy = ClientPolicy(rate=3, miss_limit=10)
    now = 1_000_000_020.0
    refusal = decide_client(policy, hits=4, misses=0, this_miss=False, now=now)
    assert refusal is not None and refusal.code == "throttled"
    assert refusal.retry_after == window_start(now, 60) + 60 - int(now)


def test_it_blocks_a_client_with_many_misses_for_the_rest_of_the_hour() -> None:
    policy = ClientPolicy(rate=100, miss_limit=3)
    now = 1_000_000_020.0
    # The third miss is still answered; after it, even a good check is refused.
    assert decide_client(policy, hits=3, misses=3, this_miss=True, now=now) is None
    refusal = decide_client(policy, hits=4, misses=3, this_miss=False, now=now)
    assert refusal is not None and refusal.code == "throttled_misses"
    assert refusal.retry_after > 60
