"""The pure selection rules, without a database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from piaotong.deduction.rules import (
    Candidate,
    Choice,
    SelectedRow,
    check_selectable,
    decide,
    statistics,
)
from piaotong.lib.errors import RuleViolation

D = Decimal


def candidate(**overrides) -> Candidate:
    values = {
        "number": "25112000000000000001",
        "kind": "digital_special",
        "status": "issued",
        "authority_flag": "",
        "is_red": False,
        "face_amount": D("1000.00"),
        "face_tax": D("130.00"),
        "issue_period": "202503",
    }
    return Candidate(**(values | overrides))


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"kind": "digital_ordinary"}, "not_deductible_kind"),
        ({"is_red": True}, "red_invoice"),
        ({"status": "voided"}, "status"),
        ({"status": "fully_red_flushed"}, "status"),
        ({"authority_flag": "abnormal"}, "flagged"),
        ({"authority_flag": "out_of_control"}, "flagged"),
        ({"issue_period": "202504"}, "issued_after_period"),
        ({"selected_in": "202502"}, "already_selected"),
    ],
)
def test_it_refuses_what_cannot_be_deducted(overrides, code):
    assert [v.code for v in check_selectable(candidate(**overrides), "202503")] == [code]


def test_it_accepts_a_partially_reversed_special_invoice_for_what_is_left():
    remaining = candidate(status="partially_red_flushed", face_tax=D("30.00"))
    assert check_selectable(remaining, "202503") == []
    assert decide(remaining, Choice()).effective_tax == D("30.00")
    with pytest.raises(RuleViolation):
        decide(remaining, Choice(effective_tax=D("30.01")))


def test_not_deducting_needs_a_known_reason():
    with pytest.raises(RuleViolation):
        decide(candidate(), Choice(deduct=False, reason="9"))
    decision = decide(candidate(), Choice(deduct=False, reason="4"))
    assert (decision.purpose, decision.reason, decision.effective_tax) == (
        "not_deduct",
        "4",
        D("0.00"),
    )


@given(st.decimals(min_value=D("-10000"), max_value=D("10000"), places=2))
def test_the_effective_tax_never_exceeds_the_face_tax_or_goes_negative(effective):
    try:
        decision = decide(candidate(), Choice(effective_tax=effective))
    except RuleViolation:
        assert effective < 0 or effective > D("130.00")
    else:
        assert D("0") <= decision.effective_tax <= decision.face_tax


def test_statistics_total_by_purpose():
    rows = [
        SelectedRow("digital_special", "deduct", D("100"), D("13"), D("13")),
        SelectedRow("paper_special", "deduct", D("200"), D("26"), D("20")),
        SelectedRow("digital_special", "not_deduct", D("50"), D("6.5"), D("0")),
    ]
    stats = statistics(rows, [])
    assert stats["totals"]["deduct"] == {
        "invoices": 2,
        "amount": "300.00",
        "face_tax": "39.00",
        "effective_tax": "33.00",
    }
    assert len(stats["by_kind"]) == 3
