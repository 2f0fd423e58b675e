"""The rule table, without a database: each rule, its order, each pair consumed once."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from piaotong.lib.taxid import compose_uscc
from piaotong.reconciliation.explain import explain_both
from piaotong.reconciliation.matching import (
    BookRecord,
    Decision,
    PlatformInvoice,
    Rule,
    Status,
    Tolerances,
    reconcile,
)
from piaotong.reconciliation.normalize import invoice_key

SELLER = compose_uscc("9", "1", "110108", "MA01GHL1")
OTHER_SELLER = compose_uscc("9", "1", "110105", "MA01QTH2")
DAY = date(2026, 3, 5)


def invoice(id_: int = 1, number: str = "26112000000000000042", **changes) -> PlatformInvoice:
    values = dict(
        id=id_,
        number=number,
        issue_date=DAY,
        seller_tax_id=SELLER,
        seller_name="北京供货测试有限公司",
        amount=Decimal("1000.00"),
        tax=Decimal("60.00"),
        total=Decimal("1060.00"),
        lines=1,
    )
    return PlatformInvoice(**(values | changes))


def record_of(inv: PlatformInvoice, row: int = 2, **changes) -> BookRecord:
    number = changes.pop("number", inv.number)
    values = dict(
        row=row,
        number=number,
        key=invoice_key(number).key,
        issue_date=inv.issue_date,
        seller_tax_id=inv.seller_tax_id,
        seller_name=inv.seller_name,
        amount=inv.amount,
        tax=inv.tax,
        total=inv.total,
    )
    return BookRecord(**(values | changes))


def only(decisions: list[Decision]) -> Decision:
    [decision] = decisions
    return decision


def test_it_pairs_identical_facts_exactly():
    inv = invoice()
    decision = only(reconcile([record_of(inv)], [inv]))
    assert (decision.rule, decision.status, decision.diffs) == (Rule.EXACT, Status.EXACT, ())


def test_it_calls_a_number_written_with_spaces_and_full_width_digits_exact_but_says_so():
    inv = invoice()
    decision = only(reconcile([record_of(inv, number="２６１１ 2000 0000 0000 0042")], [inv]))
    assert decision.rule == Rule.NUMBER_NORMALISED and decision.status == Status.EXACT
    assert [d.field for d in decision.diffs] == ["number"]


def test_it_suggests_a_pair_whose_tax_differs_within_the_rounding_allowance():
    inv = invoice(lines=3)
    decision = only(
        reconcile([record_of(inv, tax=Decimal("60.03"), total=Decimal("1060.03"))], [inv])
    )
    assert decision.rule == Rule.ROUNDING and decision.status == Status.SUGGESTED
    assert decision.notes == {"allowance": "0.03"}
    assert [(d.field, d.delta) for d in decision.diffs] == [("tax", "0.03"), ("total", "0.03")]


def test_it_calls_a_difference_beyond_the_allowance_a_mismatch():
    inv = invoice(lines=1)
    decision = only(reconcile([record_of(inv, tax=Decimal("60.02"))], [inv]))
    assert decision.rule == Rule.MISMATCH and decision.status == Status.MISMATCH
    assert [d.field for d in decision.diffs] == ["tax"]


def test_it_allows_dates_within_the_window_only():
    inv = invoice()
    near = record_of(inv, issue_date=DAY + timedelta(days=3))
    assert only(reconcile([near], [inv])).rule == Rule.DATE_WINDOW
    far = record_of(inv, issue_date=DAY + timedelta(days=11))
    assert only(reconcile([far], [inv])).rule == Rule.MISMATCH
    assert only(reconcile([far], [inv], Tolerances(date_window_days=15))).rule == Rule.DATE_WINDOW


def test_it_finds_one_wrong_digit_and_two_swapped_digits_when_date_and_amount_agree():
    inv = invoice()
    typo = record_of(inv, number="26112000000000000043")
    swap = record_of(inv, number="26112000000000000024")
    assert only(reconcile([typo], [inv])).notes == {"typo": "digit"}
    assert only(reconcile([swap], [inv])).rule == Rule.FUZZY_NUMBER
    other_day = record_of(inv, number="26112000000000000043", issue_date=DAY + timedelta(days=1))
    other_amount = record_of(inv, number="26112000000000000043", total=Decimal("1070.00"))
    for record in (other_day, other_amount):
        rules = [d.rule for d in reconcile([record], [inv])]
        assert rules == [Rule.NO_INVOICE, Rule.NO_RECORD]


def test_it_leaves_an_ambiguous_near_number_to_a_person():
    a = invoice(1, "26112000000000000041")
    b = invoice(2, "26112000000000000043")
    decisions = reconcile([record_of(a, number="26112000000000000042")], [a, b])
    assert decisions[0].rule == Rule.NO_INVOICE and decisions[0].notes == {"candidates": "2"}


def test_it_matches_a_branch_and_an_old_tax_id_at_legal_entity_level():
    inv = invoice(seller_name="北京供货测试有限公司上海分公司", seller_tax_id=OTHER_SELLER)
    head_office = record_of(inv, seller_tax_id=SELLER, seller_name="北京供货测试有限公司")
    decision = only(reconcile([head_office], [inv]))
    assert decision.rule == Rule.LEGAL_ENTITY and decision.notes == {"entity_by": "name"}
    old_id = SELLER[2:17]  # area + organisation code: the 15-character id before the USCC
    decision = only(
        reconcile([record_of(invoice(), seller_tax_id=old_id, seller_name="")], [invoice()])
    )
    assert decision.notes == {"entity_by": "organisation_code"}


def test_it_calls_another_company_with_the_same_number_a_mismatch():
    inv = invoice()
    stranger = record_of(inv, seller_tax_id=OTHER_SELLER, seller_name="广州别家有限公司")
    decision = only(reconcile([stranger], [inv]))
    assert decision.rule == Rule.MISMATCH
    assert [d.field for d in decision.diffs] == ["seller_tax_id", "seller_name"]


def test_stronger_rules_claim_their_invoice_first():
    """Row 2 has a typo that points at row 3's invoice; row 3 is exact and must keep it."""
    a = invoice(1, "26112000000000000042")
    b = invoice(2, "26112000000000000043", amount=Decimal("2000.00"), total=Decimal("2060.00"))
    typo = record_of(a, row=2, number="26112000000000000043")
    exact = record_of(b, row=3)
    decisions = reconcile([typo, exact], [a, b])
    pairs = {(d.record, d.invoice, d.rule) for d in decisions}
    assert pairs == {(1, 1, Rule.EXACT), (0, 0, Rule.FUZZY_NUMBER)}


def test_it_says_which_row_took_an_invoice_listed_twice():
    inv = invoice()
    decisions = reconcile([record_of(inv, row=2), record_of(inv, row=9)], [inv])
    assert decisions[1].notes == {"taken_by_row": "2"}


def test_every_decision_is_explained_in_chinese_and_english():
    inv = invoice(lines=3)
    decisions = reconcile(
        [
            record_of(inv, tax=Decimal("60.02")),
            record_of(invoice(2, "26112000000000000099"), row=3),
        ],
        [inv],
    )
    for decision in decisions:
        diffs = [[d.field, d.book, d.platform, d.delta] for d in decision.diffs]
        zh, en = explain_both(decision.rule, diffs, decision.notes)
        assert zh != en and zh and en
    zh, en = explain_both(
        decisions[0].rule, [["tax", "60.02", "60.00", "0.02"]], decisions[0].notes
    )
    assert "rounding" in en and "税额" in zh and "0.02" in zh


# --- Properties --------------------------------------------------------------------------------

numbers = st.sampled_from([f"2611200000000000{n:04d}" for n in (41, 42, 43, 24, 14, 100, 101)])
money = st.sampled_from(
    [Decimal("1060.00"), Decimal("1060.01"), Decimal("1061.00"), Decimal("99.99")]
)
days = st.integers(min_value=0, max_value=14).map(lambda n: DAY + timedelta(days=n))
sellers = st.sampled_from([SELLER, OTHER_SELLER, SELLER[2:17]])

invoices_st = st.lists(
    st.builds(invoice, number=numbers, total=money, issue_date=days, seller_tax_id=sellers),
    max_size=12,
).map(lambda items: [replace(item, id=index) for index, item in enumerate(items)])
records_st = st.lists(
    st.builds(
        lambda number, total, day, seller: BookRecord(
            0, number, number, day, seller, "北京供货测试有限公司", None, None, total
        ),
        numbers,
        money,
        days,
        sellers,
    ),
    max_size=12,
).map(lambda items: [replace(item, row=index + 2) for index, item in enumerate(items)])


@settings(max_examples=300, deadline=None)
@given(records=records_st, invoices=invoices_st)
def test_each_record_and_each_invoice_is_in_exactly_one_decision(records, invoices):
    decisions = reconcile(records, invoices)
    paired_records = [d.record for d in decisions if d.record is not None]
    paired_invoices = [d.invoice for d in decisions if d.invoice is not None]
    assert sorted(paired_records) == list(range(len(records)))
    assert sorted(paired_invoices) == list(range(len(invoices)))
    for decision in decisions:
        if decision.record is not None and decision.invoice is not None:
            assert decision.status in {Status.EXACT, Status.SUGGESTED, Status.MISMATCH}
        elif decision.record is not None:
            assert decision.status == Status.MISSING_ON_PLATFORM
        else:
            assert decision.status == Status.MISSING_IN_BOOKS


@settings(max_examples=200, deadline=None)
@given(invoices=invoices_st)
def test_books_equal_to_the_platform_match_exactly(invoices):
    unique = list({inv.number: inv for inv in invoices}.values())
    records = [record_of(inv, row=index + 2) for index, inv in enumerate(unique)]
    decisions = reconcile(records, unique)
    assert all(d.status == Status.EXACT for d in decisions)
    assert {(d.record, d.invoice) for d in decisions} == {(i, i) for i in range(len(unique))}
