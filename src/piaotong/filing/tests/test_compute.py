"""The return computation without a database: worked examples and properties."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from piaotong.filing.compute import (
    GENERAL,
    SMALL_SCALE,
    InputGroup,
    OutputGroup,
    ReturnFacts,
    compute_general,
    compute_return,
    compute_small_scale,
    differences,
)

D = Decimal


def out(rate: str, amount: str, tax: str, special: bool = True) -> OutputGroup:
    return OutputGroup(special, rate, D(amount), D(tax))


def inp(effective: str) -> InputGroup:
    return InputGroup("digital_special", 1, D("0"), D(effective), D(effective))


def test_it_subtracts_input_and_counts_red_invoices_negative():
    facts = ReturnFacts(
        "202503",
        GENERAL,
        output=(
            out("0.13", "10000", "1300"),
            out("0.13", "-2000", "-260"),
            out("0.06", "1000", "60"),
        ),
        input=(inp("500"),),
    )
    lines = compute_general(facts).lines
    assert lines["output_amount"] == D("9000.00") and lines["output_tax"] == D("1100.00")
    assert lines["payable"] == D("600.00") and lines["credit_carried_forward"] == D("0.00")


def test_it_carries_excess_input_forward():
    facts = ReturnFacts(
        "202503",
        GENERAL,
        output=(out("0.13", "1000", "130"),),
        input=(inp("200"),),
        credit_brought_forward=D("50"),
    )
    lines = compute_general(facts).lines
    assert lines["deductible_total"] == D("250.00")
    assert lines["actually_deducted"] == D("130.00")
    assert lines["general_tax"] == D("0.00") and lines["payable"] == D("0.00")
    assert lines["credit_carried_forward"] == D("120.00")


def test_transfer_out_reduces_the_deductible_total():
    facts = ReturnFacts(
        "202503",
        GENERAL,
        output=(out("0.13", "1000", "130"),),
        input=(inp("100"),),
        transfer_out=D("40"),
    )
    assert compute_general(facts).lines["payable"] == D("70.00")


def test_simplified_levy_sales_are_never_offset_by_input_tax():
    facts = ReturnFacts(
        "202503",
        GENERAL,
        output=(out("0.05", "1000", "50"), out("0.13", "100", "13")),
        input=(inp("100"),),
    )
    lines = compute_general(facts).lines
    assert lines["simplified_tax"] == D("50.00") and lines["general_tax"] == D("0.00")
    assert lines["payable"] == D("50.00") and lines["credit_carried_forward"] == D("87.00")


def test_zero_rated_and_exempt_sales_are_reported_without_tax():
    facts = ReturnFacts(
        "202503", GENERAL, output=(out("0", "500", "0"), out("exempt", "300", "0", False))
    )
    lines = compute_general(facts).lines
    assert (lines["zero_rated_sales"], lines["exempt_sales"], lines["payable"]) == (
        D("500.00"),
        D("300.00"),
        D("0.00"),
    )


def test_small_scale_below_the_threshold_pays_only_on_special_invoices():
    facts = ReturnFacts(
        "202503",
        SMALL_SCALE,
        output=(out("0.01", "60000", "600", False), out("0.01", "40000", "400", True)),
    )
    result = compute_small_scale(facts)
    assert result.below_threshold  # exactly 100,000.00 is still exempt
    assert result.lines["taxable_sales"] == D("40000.00")
    assert result.lines["small_business_exempt_sales"] == D("60000.00")
    assert result.lines["tax_due"] == D("400.00") and result.lines["exempt_tax"] == D("600.00")


def test_small_scale_above_the_threshold_pays_on_everything():
    facts = ReturnFacts(
        "202503",
        SMALL_SCALE,
        output=(out("0.01", "60000.01", "600", False), out("0.03", "40000", "1200", True)),
    )
    result = compute_small_scale(facts)
    assert not result.below_threshold
    assert result.lines["tax_due"] == D("600.00") + D("1200.00")
    assert result.lines["small_business_exempt_sales"] == D("0.00")


def test_small_scale_quarterly_threshold_is_three_months():
    facts = ReturnFacts(
        "2025Q1", SMALL_SCALE, months=3, output=(out("0.01", "250000", "2500", False),)
    )
    assert compute_small_scale(facts).below_threshold
    monthly = ReturnFacts("202501", SMALL_SCALE, output=facts.output)
    assert not compute_small_scale(monthly).below_threshold


def test_small_scale_red_invoices_reduce_sales_below_the_threshold():
    facts = ReturnFacts(
        "202503",
        SMALL_SCALE,
        output=(out("0.01", "120000", "1200", False), out("0.01", "-30000", "-300", False)),
    )
    result = compute_small_scale(facts)
    assert result.lines["sales_total"] == D("90000.00") and result.below_threshold
    assert result.lines["payable"] == D("0.00")


def test_differences_name_the_changed_lines():
    before = compute_general(ReturnFacts("202503", GENERAL, output=(out("0.13", "100", "13"),)))
    after = compute_general(
        ReturnFacts("202503", GENERAL, output=(out("0.13", "100", "13"), out("0.13", "100", "13")))
    )
    changed = {
        c.name: c.delta for c in differences(before.as_json()["lines"], after.as_json()["lines"])
    }
    assert changed == {
        "output_amount": D("100.00"),
        "output_tax": D("13.00"),
        "general_tax": D("13.00"),
        "payable": D("13.00"),
    }


# --- Properties ------------------------------------------------------------------------------

cents = st.decimals(min_value=D("-1000000"), max_value=D("1000000"), places=2)
positive = st.decimals(min_value=D("0"), max_value=D("1000000"), places=2)
rates = st.sampled_from(["0.13", "0.09", "0.06", "0.05", "0.03", "0", "exempt"])
groups = st.builds(OutputGroup, st.booleans(), rates, cents, cents)
general_facts = st.builds(
    ReturnFacts,
    st.just("202503"),
    st.just(GENERAL),
    st.just(1),
    st.lists(groups, max_size=6).map(tuple),
    st.lists(st.builds(inp, positive.map(str)), max_size=4).map(tuple),
    positive,
    positive,
)


@given(general_facts)
def test_payable_and_credit_balance_the_general_return(facts):
    lines = compute_general(facts).lines
    assert lines["general_tax"] >= 0 and lines["credit_carried_forward"] >= 0
    assert lines["general_tax"] == 0 or lines["credit_carried_forward"] == 0
    assert lines["general_tax"] - lines["credit_carried_forward"] == (
        lines["output_tax"] - lines["deductible_total"]
    )
    assert lines["payable"] == lines["general_tax"] + lines["simplified_tax"]
    assert lines["actually_deducted"] + lines["general_tax"] == lines["output_tax"]


@given(general_facts, groups)
def test_a_red_invoice_cancels_its_blue_invoice(facts, group):
    red = OutputGroup(group.special, group.rate, -group.amount, -group.tax)
    with_both = ReturnFacts(
        facts.period,
        facts.taxpayer_kind,
        facts.months,
        (*facts.output, group, red),
        facts.input,
        facts.transfer_out,
        facts.credit_brought_forward,
    )
    assert compute_return(with_both).lines == compute_return(facts).lines


@given(
    st.lists(
        st.builds(
            OutputGroup,
            st.booleans(),
            st.sampled_from(["0.01", "0.03", "0.05"]),
            positive,
            st.just(D(0)),
        ),
        max_size=6,
    ),
    st.sampled_from([1, 3]),
)
def test_small_scale_tax_is_the_levy_on_taxable_sales(output, months):
    result = compute_small_scale(ReturnFacts("2025Q1", SMALL_SCALE, months, tuple(output)))
    lines = result.lines
    assert lines["taxable_sales"] + lines["small_business_exempt_sales"] == lines["sales_total"]
    assert lines["payable"] == lines["tax_due"] >= 0
    if not result.below_threshold:
        assert lines["small_business_exempt_sales"] == 0
    assert lines["taxable_sales"] >= lines["special_sales"]  # special invoices are always taxed
