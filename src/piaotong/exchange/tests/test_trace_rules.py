"""The trace's pure parts: reading the input, near-miss candidates and the verdict over facts.

No database: the facts are built by hand, as `trace_facts.gather` would collect them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from piaotong.exchange.trace import (
    HeldInvoice,
    Lag,
    MalformedInput,
    NodeAnswer,
    TraceFacts,
    Verdict,
    decide,
    malformed,
    near_miss_numbers,
    parse_trace_input,
)
from piaotong.lib.qr import compose_digital_qr

TODAY = date(2026, 11, 28)
NOW = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
NUMBER = "26112000000000000042"


def query(text: str = NUMBER, **extra: Any) -> Any:
    return parse_trace_input(text, today=TODAY, **extra)


def facts(**extra: Any) -> TraceFacts:
    base: dict[str, Any] = {
        "query": query(),
        "node_id": "node-31",
        "node_region": "31",
        "is_hub": False,
        "now": NOW,
    }
    if "query" in extra and isinstance(extra["query"], str):
        extra["query"] = query(extra["query"])
    return TraceFacts(**(base | extra))


def held(**extra: Any) -> HeldInvoice:
    values: dict[str, Any] = {
        "number": NUMBER,
        "kind": "digital_special",
        "status": "issued",
        "issue_date": date(2026, 11, 20),
        "total_amount": Decimal("1000.00"),
        "total_with_tax": Decimal("1060.00"),
        "seller_name": "北京测试科技有限公司",
        "seller_tax_id": "91110108MA01TEXT0X",
        "buyer_name": "上海测试贸易有限公司",
        "buyer_tax_id": "91310115MA1TEXT20X",
    }
    return HeldInvoice(**(values | extra))


# --- Input --------------------------------------------------------------------------------------


def test_it_reads_the_four_kinds_of_input() -> None:
    assert query().form == "number" and query().channel == "2"
    legacy = query("011001900111 00000001")
    assert legacy.form == "legacy" and legacy.region == "11" and legacy.invoice_code
    assert query("00000001", invoice_code="1100191130").legacy is not None
    qr = compose_digital_qr("31", NUMBER, date(2026, 11, 20), Decimal("1060.00"))
    read = query(qr)
    assert (read.form, read.amount, read.amount_is_total) == ("qr", Decimal("1060.00"), True)
    assert read.issue_date == date(2026, 11, 20)


@pytest.mark.parametrize(
    ("text", "extra", "field", "code"),
    [
        ("2611200000000000004", {}, "number", "number_length"),
        ("26992000000000000042", {}, "number", "unknown_region"),
        ("27112000000000000042", {}, "number", "future_year"),
        ("2611200000000000004X", {}, "number", "number_not_digit"),
        ("00000001", {}, "invoice_code", "legacy_code_missing"),
        ("01,32,,26112000000000000042,1060.00,20261120,,0000,", {}, "check", "qr_check_mismatch"),
        (NUMBER, {"issue_date": "2026-13-01"}, "issue_date", "date_format"),
        (NUMBER, {"amount": "10.001"}, "amount", "amount_format"),
    ],
)
def test_it_says_which_part_of_the_input_is_wrong(
    text: str, extra: dict[str, str], field: str, code: str
) -> None:
    with pytest.raises(MalformedInput) as raised:
        query(text, **extra)
    assert (raised.value.violations[0].field, raised.value.violations[0].code) == (field, code)
    result = malformed(raised.value)
    assert result.verdict == Verdict.MALFORMED
    assert result.explanation_zh != result.explanation_en and field in result.explanation_en


def test_it_proposes_one_digit_off_and_swapped_numbers_only_if_valid() -> None:
    candidates = near_miss_numbers(NUMBER)
    assert "26112000000000000024" in candidates  # the last two digits swapped
    assert "26112000000000000043" in candidates  # the last digit off by one
    assert "26992000000000000042" not in candidates  # region 99 does not exist
    assert NUMBER not in candidates and len(candidates) < 200


# --- Verdicts -----------------------------------------------------------------------------------


def test_it_finds_an_invoice_held_here_and_visible() -> None:
    result = decide(facts(local=held(), visible=True))
    assert result.verdict == Verdict.FOUND and result.invoice is not None
    assert "1060.00" in result.explanation_en and "上海测试贸易有限公司" in result.explanation_zh


def test_it_reveals_nothing_but_existence_to_someone_not_a_party() -> None:
    result = decide(facts(local=held(), visible=False))
    assert result.verdict == Verdict.NOT_A_PARTY
    assert result.invoice is None and "1060" not in result.explanation_en


def test_it_names_the_pre_tax_amount_typed_for_a_digital_invoice() -> None:
    typed = query(NUMBER, amount="1000.00", issue_date="2026-11-20")
    result = decide(facts(query=typed, local=held(), visible=True))
    assert result.verdict == Verdict.FIELD_MISMATCH and result.mismatches == ["amount"]
    assert "价税合计" in result.explanation_zh and "before tax" in result.explanation_en


def test_it_names_a_wrong_date() -> None:
    typed = query(NUMBER, amount="1060.00", issue_date="20261121")
    result = decide(facts(query=typed, local=held(), visible=True))
    assert result.mismatches == ["issue_date"] and "2026-11-20" in result.explanation_en


@pytest.mark.parametrize(
    ("status", "verdict"),
    [("voided", Verdict.VOIDED), ("fully_red_flushed", Verdict.RED_FLUSHED)],
)
def test_it_says_when_the_invoice_was_voided_or_reversed(status: str, verdict: Verdict) -> None:
    assert decide(facts(local=held(status=status), visible=True)).verdict == verdict


def home(**extra: Any) -> NodeAnswer:
    values: dict[str, Any] = {
        "node_id": "node-11",
        "role": "regional",
        "region": "11",
        "reached": True,
        "has_invoice": True,
        "status": "issued",
        "buyer_region": "31",
        "committed_at": NOW - timedelta(minutes=3),
        "published_at": NOW - timedelta(minutes=2),
        "stream_seq": 812,
        "visible": True,
    }
    return NodeAnswer(**(values | extra))


def test_it_says_not_yet_synced_with_the_lag_and_the_expected_arrival() -> None:
    lag = Lag("running", pending=300, last_lag_seconds=2.0, apply_rate=100.0)
    result = decide(facts(answers=[home()], lag=lag))
    assert result.verdict == Verdict.NOT_YET_SYNCED
    assert result.expected_arrival == NOW + timedelta(seconds=5)
    assert "300" in result.explanation_en


def test_it_cannot_promise_an_arrival_while_the_consumer_is_stopped() -> None:
    lag = Lag("stopped", pending=None, last_lag_seconds=None, apply_rate=None)
    result = decide(facts(answers=[home()], lag=lag))
    assert result.verdict == Verdict.NOT_YET_SYNCED and result.expected_arrival is None
    assert "stopped" in result.explanation_en


def test_it_says_pending_at_the_issuer_and_since_when_its_relay_is_down() -> None:
    down_since = NOW - timedelta(minutes=10)
    answer = home(published_at=None, stream_seq=None)
    result = decide(
        facts(answers=[answer], home_relay_state="nats_down", home_relay_since=down_since)
    )
    assert result.verdict == Verdict.PENDING_AT_ISSUER
    assert "nats_down" in result.explanation_en and "2026-11-28 09:50:00" in result.explanation_en


def test_it_sends_the_user_to_the_right_region_for_an_invoice_this_node_never_receives() -> None:
    answer = home(buyer_region="44")
    result = decide(facts(answers=[answer]))
    assert result.verdict == Verdict.OUT_OF_SCOPE and result.region_to_ask == "11"
    assert decide(facts(answers=[answer], is_hub=True, node_region="00")).verdict == (
        Verdict.NOT_YET_SYNCED
    )


def test_it_sends_legacy_invoices_to_their_regions_bureau() -> None:
    result = decide(facts(query="3100191130 00000001"))
    assert result.verdict == Verdict.OUT_OF_SCOPE and result.region_to_ask == "31"


def test_it_proposes_near_misses_before_calling_the_invoice_unknown() -> None:
    nothing = [home(has_invoice=False, buyer_region="")]
    result = decide(facts(query="26312000000000000042", answers=nothing, near_misses=["x"]))
    assert result.verdict == Verdict.NEAR_MISS and result.near_misses == ["x"]


def test_it_calls_an_invoice_no_node_knows_not_found_anywhere() -> None:
    nothing = [home(node_id="hub", role="hub", region="00", has_invoice=False)]
    result = decide(facts(query="26312000000000000042", answers=nothing))
    assert result.verdict == Verdict.NOT_FOUND_ANYWHERE and "hub" in result.explanation_en


def test_an_unknown_number_of_another_region_is_not_found_once_its_issuer_says_so() -> None:
    """At node 31, a region-11 number: out of scope while node 11 is silent; once node 11
    answers that it never issued it, the answer is that nobody has it."""
    hub = home(node_id="hub", role="hub", region="00", has_invoice=False)
    issuer = home(has_invoice=False, buyer_region="")
    result = decide(facts(answers=[hub, issuer]))
    assert result.verdict == Verdict.NOT_FOUND_ANYWHERE and "node-11" in result.explanation_en
    silent = NodeAnswer("node-11", "regional", "11", reached=False, error="no answer")
    assert decide(facts(answers=[hub, silent])).verdict == Verdict.OUT_OF_SCOPE


def test_it_says_the_search_is_incomplete_when_a_node_did_not_answer() -> None:
    silent = [NodeAnswer("hub", "hub", "00", reached=False, error="no answer")]
    result = decide(facts(query="26312000000000000042", answers=silent))
    assert result.verdict == Verdict.NOT_FOUND_ANYWHERE and "did not answer" in (
        result.explanation_en
    )


def test_it_hides_an_invoice_held_elsewhere_from_someone_not_a_party() -> None:
    result = decide(facts(answers=[home(visible=False)]))
    assert result.verdict == Verdict.NOT_A_PARTY and result.timeline == []
