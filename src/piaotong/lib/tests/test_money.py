"""Tax arithmetic: rates, lines, totals and the tolerances invoicing software enforces."""

from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.utils import translation
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.money import (
    DISCOUNT,
    DISCOUNTED,
    MAX_AMOUNT,
    RATES,
    LineInput,
    TaxRate,
    Totals,
    check_invoice,
    compute_line,
    compute_totals,
    parse_rate,
    rates_for_taxpayer,
    round_cents,
    round_fine,
    small_scale_exempt,
)

D = Decimal
VAT13, VAT9, VAT6, LEVY1 = RATES["0.13"], RATES["0.09"], RATES["0.06"], RATES["0.01"]
NUMERIC_RATES = [rate for rate in RATES.values() if not rate.is_zero]


def violation(line: LineInput) -> RuleViolation:
    with pytest.raises(RuleViolation) as raised:
        compute_line(line)
    return raised.value


def invoice_violations(lines: list[LineInput]) -> list[tuple[str, str]]:
    with pytest.raises(RuleViolations) as raised:
        check_invoice(lines)
    return [(v.field, v.code) for v in raised.value.violations]


cents = st.integers(min_value=1, max_value=10**13).map(lambda n: D(n).scaleb(-2))
rates = st.sampled_from(NUMERIC_RATES)


# --- Rates -------------------------------------------------------------------------------


def test_it_offers_exactly_the_rates_of_the_reference():
    assert set(RATES) == {
        "0.13",
        "0.09",
        "0.06",
        "0.05",
        "0.03",
        "0.01",
        "0",
        "exempt",
        "non_taxable",
    }
    assert [RATES[k].is_zero for k in ("0", "exempt", "non_taxable")] == [True, True, True]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("13%", "0.13"),
        ("13", "0.13"),
        ("0.13", "0.13"),
        (" 13.00 % ", "0.13"),
        ("１３％", "0.13"),
        (D("0.13"), "0.13"),
        (D("13"), "0.13"),
        ("9%", "0.09"),
        ("6", "0.06"),
        ("5%", "0.05"),
        ("0.030", "0.03"),
        ("1", "0.01"),
        ("1%", "0.01"),
        ("0", "0"),
        ("0%", "0"),
        ("零税率", "0"),
        ("免税", "exempt"),
        ("Exempt", "exempt"),
        ("不征税", "non_taxable"),
        ("non-taxable", "non_taxable"),
        ("non_taxable", "non_taxable"),
    ],
)
def test_it_parses_rates_however_they_are_written(text, key):
    assert parse_rate(text).key == key


def test_it_passes_a_parsed_rate_through():
    assert parse_rate(VAT9) is VAT9


@pytest.mark.parametrize(
    "text", ["7%", "1.5%", "100%", "-13%", "abc", "", "NaN", "Infinity", D("0.07"), "0.130001"]
)
def test_it_refuses_unknown_rates(text):
    with pytest.raises(RuleViolation) as raised:
        parse_rate(text)
    assert (raised.value.field, raised.value.code) == ("tax_rate", "unknown_rate")


def test_it_lets_only_small_scale_taxpayers_use_the_reduced_one_percent():
    assert "0.01" in rates_for_taxpayer("small_scale")
    assert "0.01" not in rates_for_taxpayer("general")


def test_it_keeps_general_rates_from_small_scale_taxpayers():
    small = rates_for_taxpayer("small_scale")
    assert not {"0.13", "0.09", "0.06", "0"} & small
    assert {"0.13", "0.09", "0.06", "0.05", "0.03", "0"} <= rates_for_taxpayer("general")


def test_it_refuses_an_unknown_taxpayer_kind():
    with pytest.raises(RuleViolation) as raised:
        rates_for_taxpayer("large")
    assert raised.value.code == "unknown_taxpayer_kind"


@pytest.mark.parametrize(
    ("sales", "exempt"),
    [(D("0"), True), (D("99999.99"), True), (D("100000"), True), (D("100000.01"), False)],
)
def test_it_exempts_small_scale_sales_up_to_the_monthly_threshold(sales, exempt):
    assert small_scale_exempt(sales) is exempt


# --- Rounding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate", "tax"),
    [
        ("0.50", LEVY1, "0.01"),  # 0.005: banker's rounding would give 0.00
        ("2.50", LEVY1, "0.03"),  # 0.025: banker's rounding would give 0.02
        ("0.49", LEVY1, "0.00"),
        ("1.50", LEVY1, "0.02"),
        ("0.10", RATES["0.05"], "0.01"),  # 0.005
        ("0.50", RATES["0.03"], "0.02"),  # 0.015
        ("12.50", VAT6, "0.75"),
        ("0.05", VAT13, "0.01"),  # 0.0065
        ("0.03", VAT13, "0.00"),  # 0.0039
    ],
)
def test_it_rounds_tax_half_up_to_the_fen(amount, rate, tax):
    assert compute_line(LineInput(rate=rate, amount=D(amount))).tax == D(tax)


@given(st.integers(min_value=1, max_value=10**12))
def test_it_rounds_every_half_fen_up(cents_amount):
    line = compute_line(LineInput(rate=LEVY1, amount=D(cents_amount).scaleb(-2)))
    # amount × 1% in fen is cents_amount / 100; half up is floor(x + 1/2).
    assert line.tax == D((cents_amount + 50) // 100).scaleb(-2)


def test_it_rounds_negative_halves_away_from_zero():
    assert round_cents(D("-0.005")) == D("-0.01")
    assert round_cents(D("-0.0049")) == D("0.00")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D(10) / D("1.13"), "8.8495575221239"),
        (D("0.1234567890123456"), "0.1234567890123"),
        (D("0.00000000000005"), "0.0000000000001"),
        (D("123456789.123456789"), "123456789.123457"),
        (D("99999999999999.95"), "100000000000000"),
        (D("2.50000"), "2.5"),
        (D("100"), "100"),
    ],
)
def test_it_rounds_fine_values_to_13_places_and_15_digits(value, expected):
    result = round_fine(value)
    assert format(result, "f") == expected


@given(st.decimals(min_value=D("0.0000000000001"), max_value=D("999999999999999"), places=20))
def test_it_keeps_fine_values_within_13_places_and_15_digits(value):
    result = round_fine(value)
    digits = format(result, "f").replace(".", "").strip("0")
    places = len(format(result, "f").partition(".")[2])
    assert places <= 13
    assert len(digits) <= 15
    assert abs(result - value) <= D("0.5").scaleb(-min(13, 15 - len(str(int(value)))))


# --- One line ----------------------------------------------------------------------------


def test_it_computes_amount_from_quantity_and_unit_price():
    line = compute_line(LineInput(rate=VAT13, quantity=D("3"), unit_price=D("3.335")))
    assert (line.amount, line.tax, line.gross) == (D("10.01"), D("1.30"), D("11.31"))
    assert (line.quantity, line.unit_price) == (D("3"), D("3.335"))


def test_it_keeps_a_given_amount_that_agrees_with_quantity_times_price():
    line = compute_line(LineInput(rate=VAT6, amount=D("30.01"), quantity=D(3), unit_price=D(10)))
    assert line.amount == D("30.01")


def test_it_refuses_an_amount_that_disagrees_with_quantity_times_price():
    found = violation(LineInput(rate=VAT6, amount=D("30.02"), quantity=D(3), unit_price=D(10)))
    assert (found.field, found.code) == ("amount", "amount_mismatch")
    assert found.params["product"] == D("30.00")


def test_it_computes_tax_from_a_tax_inclusive_amount():
    line = compute_line(LineInput(rate=VAT13, amount=D("100.00"), tax_inclusive=True))
    assert (line.amount, line.tax, line.gross) == (D("88.50"), D("11.50"), D("100.00"))


def test_it_derives_the_pre_tax_unit_price_from_the_pre_tax_amount():
    line = compute_line(LineInput(rate=VAT13, quantity=D(3), unit_price=D(10), tax_inclusive=True))
    assert (line.gross, line.tax, line.amount, line.unit_price) == (
        D("30.00"),
        D("3.45"),
        D("26.55"),
        D("8.85"),
    )


def test_it_converts_a_lone_tax_inclusive_unit_price_by_the_rate():
    line = compute_line(
        LineInput(rate=VAT13, amount=D("10.00"), unit_price=D(10), tax_inclusive=True)
    )
    assert line.unit_price == D("8.8495575221239")


def test_it_gives_money_two_decimal_places_however_it_was_entered():
    line = compute_line(LineInput(rate=VAT13, amount=D("100"), tax=D("13")))
    assert (str(line.amount), str(line.tax), str(line.gross)) == ("100.00", "13.00", "113.00")
    totals = compute_totals([line])
    assert (str(totals.amount), str(totals.total)) == ("100.00", "113.00")
    assert str(compute_totals([]).total) == "0.00"


def test_it_drops_trailing_zeros_but_never_writes_an_exponent():
    line = compute_line(LineInput(rate=VAT6, quantity=D("100.000"), unit_price=D("2.50")))
    assert (str(line.quantity), str(line.unit_price)) == ("100", "2.5")


@pytest.mark.parametrize(("supplied", "kept"), [("13.06", True), ("12.94", True), ("13.00", True)])
def test_it_keeps_a_supplied_tax_within_six_fen(supplied, kept):
    line = compute_line(LineInput(rate=VAT13, amount=D("100.00"), tax=D(supplied)))
    assert (line.tax, line.gross) == (D(supplied), D("100.00") + D(supplied))


@pytest.mark.parametrize("supplied", ["13.07", "12.93", "0.00"])
def test_it_refuses_a_supplied_tax_more_than_six_fen_off(supplied):
    found = violation(LineInput(rate=VAT13, amount=D("100.00"), tax=D(supplied)))
    assert (found.field, found.code) == ("tax", "tax_tolerance")
    assert found.params == {"tax": D(supplied), "computed": D("13.00")}


def test_it_keeps_the_gross_when_a_tax_inclusive_line_supplies_its_tax():
    line = compute_line(
        LineInput(rate=VAT13, amount=D("113.00"), tax=D("13.06"), tax_inclusive=True)
    )
    assert (line.amount, line.tax, line.gross) == (D("99.94"), D("13.06"), D("113.00"))


@pytest.mark.parametrize("key", ["0", "exempt", "non_taxable"])
def test_it_puts_no_tax_on_zero_rated_exempt_and_untaxed_lines(key):
    line = compute_line(LineInput(rate=RATES[key], amount=D("250.00"), tax_inclusive=True))
    assert (line.amount, line.tax, line.gross) == (D("250.00"), D("0.00"), D("250.00"))


def test_it_refuses_any_tax_on_an_exempt_line_even_within_tolerance():
    found = violation(LineInput(rate=RATES["exempt"], amount=D("100.00"), tax=D("0.01")))
    assert (found.field, found.code) == ("tax", "tax_not_zero")


def test_it_refuses_a_tax_of_the_wrong_sign():
    found = violation(LineInput(rate=VAT13, amount=D("0.30"), tax=D("-0.01")))
    assert (found.field, found.code) == ("tax", "tax_sign")


def test_it_computes_a_discount_line_as_negative():
    line = compute_line(LineInput(rate=VAT13, amount=D("-10.50"), kind=DISCOUNT))
    assert (line.amount, line.tax, line.gross) == (D("-10.50"), D("-1.37"), D("-11.87"))


def test_it_computes_a_discount_as_the_mirror_of_the_same_sale():
    sale = compute_line(LineInput(rate=LEVY1, amount=D("0.50")))
    discount = compute_line(LineInput(rate=LEVY1, amount=D("-0.50"), kind=DISCOUNT))
    assert discount.tax == -sale.tax


@pytest.mark.parametrize(
    ("line", "field", "code"),
    [
        (LineInput(rate=VAT13), "amount", "amount_required"),
        (LineInput(rate=VAT13, unit_price=D(5)), "amount", "amount_required"),
        (
            LineInput(rate=VAT13, quantity=D(2), amount=D(10)),
            "quantity",
            "quantity_without_unit_price",
        ),
        (LineInput(rate=VAT13, amount=D("0.00")), "amount", "amount_zero"),
        (LineInput(rate=VAT13, amount=D("-1.00")), "amount", "amount_negative"),
        (LineInput(rate=VAT13, amount=D("1.005")), "amount", "fractional_cents"),
        (LineInput(rate=VAT13, amount=MAX_AMOUNT + D("0.01")), "amount", "too_large"),
        (LineInput(rate=VAT13, amount=D("NaN")), "amount", "not_a_number"),
        (LineInput(rate=VAT13, amount=D("1"), tax=D("0.125")), "tax", "fractional_cents"),
        (LineInput(rate=VAT13, quantity=D(0), unit_price=D(1)), "quantity", "not_positive"),
        (LineInput(rate=VAT13, quantity=D(-1), unit_price=D(1)), "quantity", "not_positive"),
        (LineInput(rate=VAT13, quantity=D(1), unit_price=D(0)), "unit_price", "not_positive"),
        (
            LineInput(rate=VAT13, quantity=D("Infinity"), unit_price=D(1)),
            "quantity",
            "not_a_number",
        ),
        (
            LineInput(rate=VAT13, quantity=D("0.00000000000001"), unit_price=D(10**15)),
            "quantity",
            "too_many_decimals",
        ),
        (
            LineInput(rate=VAT13, quantity=D(1), unit_price=D("1234567890.123456")),
            "unit_price",
            "too_many_digits",
        ),
        (LineInput(rate=VAT13, quantity=D("0.001"), unit_price=D("1")), "amount", "amount_zero"),
        (LineInput(rate=VAT13, quantity=D(10**8), unit_price=D(10**5)), "amount", "too_large"),
        (LineInput(rate=VAT13, amount=D("5.00"), kind=DISCOUNT), "amount", "discount_not_negative"),
        (
            LineInput(rate=VAT13, amount=D("-5"), quantity=D(1), unit_price=D(5), kind=DISCOUNT),
            "quantity",
            "discount_has_quantity",
        ),
        (LineInput(rate=VAT13, amount=D("5"), kind=3), "kind", "unknown_kind"),
        (
            LineInput(rate=VAT13, amount=D("0.05"), tax=D("0.05"), tax_inclusive=True),
            "amount",
            "amount_zero",
        ),
    ],
)
def test_it_refuses_lines_that_break_a_rule(line, field, code):
    found = violation(line)
    assert (found.field, found.code) == (field, code)


def test_it_accepts_the_largest_amount_and_the_finest_numbers():
    assert compute_line(LineInput(rate=RATES["exempt"], amount=MAX_AMOUNT)).gross == MAX_AMOUNT
    fine = LineInput(
        rate=VAT13, quantity=D("1.000000000000100000"), unit_price=D("12345.6789012345")
    )
    assert compute_line(fine).amount == D("12345.68")


def test_it_explains_a_tolerance_violation_in_words():
    found = violation(LineInput(rate=VAT13, amount=D("100.00"), tax=D("14.00")))
    with translation.override("en"):
        assert "14.00" in found.text()
        assert "13.00" in found.text()
        assert "0.06" in found.text()


def test_it_negates_a_line_and_totals_for_a_red_letter_invoice():
    line = compute_line(LineInput(rate=VAT13, quantity=D(2), unit_price=D("5.5")))
    red = line.negated()
    assert (red.amount, red.tax, red.gross, red.quantity, red.unit_price) == (
        D("-11.00"),
        D("-1.43"),
        D("-12.43"),
        D("-2"),
        D("5.5"),
    )
    assert compute_totals([line]).negated() == Totals(D("-11.00"), D("-1.43"), D("-12.43"))


@given(cents, rates)
def test_it_keeps_gross_equal_to_amount_plus_tax(amount, rate):
    line = compute_line(LineInput(rate=rate, amount=amount))
    assert line.tax == (amount * rate.value).quantize(D("0.01"), rounding=ROUND_HALF_UP)
    assert line.gross == line.amount + line.tax


@given(cents, rates)
def test_it_splits_a_tax_inclusive_amount_exactly(gross, rate):
    line = compute_line(LineInput(rate=rate, amount=gross, tax_inclusive=True))
    assert line.amount + line.tax == gross
    assert line.tax == round_cents(gross * rate.value / (1 + rate.value))


@given(cents, rates)
def test_it_round_trips_tax_inclusive_through_tax_exclusive_within_a_fen(gross, rate):
    inclusive = compute_line(LineInput(rate=rate, amount=gross, tax_inclusive=True))
    exclusive = compute_line(LineInput(rate=rate, amount=inclusive.amount))
    assert abs(exclusive.gross - gross) <= D("0.01")


@given(cents, rates)
def test_it_round_trips_tax_exclusive_through_tax_inclusive_within_a_fen(amount, rate):
    exclusive = compute_line(LineInput(rate=rate, amount=amount))
    inclusive = compute_line(LineInput(rate=rate, amount=exclusive.gross, tax_inclusive=True))
    assert abs(inclusive.amount - amount) <= D("0.01")
    assert abs(inclusive.tax - exclusive.tax) <= D("0.01")


@given(
    st.integers(min_value=1, max_value=10**6),
    st.integers(min_value=1, max_value=10**7).map(lambda n: D(n).scaleb(-3)),
    rates,
)
def test_it_keeps_quantity_times_pre_tax_price_on_the_amount(quantity, gross_price, rate):
    assume(round_cents(quantity * gross_price) > 0)
    line = compute_line(
        LineInput(rate=rate, quantity=D(quantity), unit_price=gross_price, tax_inclusive=True)
    )
    assert line.unit_price is not None
    assert line.quantity is not None
    assert abs(line.quantity * line.unit_price - line.amount) <= D("0.01")


# --- Invoices ------------------------------------------------------------------------------


@given(st.lists(st.tuples(cents.filter(lambda c: c < 10**9), rates), min_size=1, max_size=30))
def test_it_totals_are_the_sums_of_the_lines(pairs):
    lines = [compute_line(LineInput(rate=rate, amount=amount)) for amount, rate in pairs]
    totals = compute_totals(lines)
    assert totals.amount == sum(line.amount for line in lines)
    assert totals.tax == sum(line.tax for line in lines)
    assert totals.total == totals.amount + totals.tax == sum(line.gross for line in lines)


def test_it_checks_an_invoice_and_returns_lines_in_order():
    lines, totals = check_invoice(
        [
            LineInput(rate=VAT13, quantity=D(2), unit_price=D("50")),
            LineInput(rate=VAT6, amount=D("106.00"), tax_inclusive=True),
        ]
    )
    assert [line.amount for line in lines] == [D("100.00"), D("100.00")]
    assert totals == Totals(D("200.00"), D("19.00"), D("219.00"))


def test_it_reports_every_problem_of_every_line_at_once():
    found = invoice_violations(
        [
            LineInput(rate=VAT13, amount=D("-1")),
            LineInput(rate=VAT13, amount=D("10")),
            LineInput(rate=VAT13, quantity=D(0), unit_price=D(1), tax=D("0.001")),
            LineInput(rate=VAT13, amount=D("100"), tax=D("20")),
        ]
    )
    assert found == [
        ("lines.0.amount", "amount_negative"),
        ("lines.2.quantity", "not_positive"),
        ("lines.2.tax", "fractional_cents"),
        ("lines.3.tax", "tax_tolerance"),
    ]


def test_it_needs_at_least_one_line():
    assert invoice_violations([]) == [("lines", "no_lines")]


def test_it_fits_at_most_2000_lines():
    line = LineInput(rate=RATES["exempt"], amount=D("1.00"))
    assert len(check_invoice([line] * 2000)[0]) == 2000
    assert invoice_violations([line] * 2001) == [("lines", "too_many_lines")]


def discounted(amount: str = "100.00", rate: TaxRate = VAT13) -> LineInput:
    return LineInput(rate=rate, amount=D(amount), kind=DISCOUNTED)


def discount(amount: str = "-10.00", rate: TaxRate = VAT13) -> LineInput:
    return LineInput(rate=rate, amount=D(amount), kind=DISCOUNT)


def test_it_accepts_a_discount_right_after_its_discounted_line():
    lines, totals = check_invoice([discounted(), discount(), LineInput(rate=VAT6, amount=D(1))])
    assert totals.amount == D("91.00")
    assert [line.kind for line in lines] == [2, 1, 0]


def test_it_accepts_a_discount_as_large_as_the_discounted_line():
    _lines, totals = check_invoice(
        [discounted(), discount("-100.00"), discounted("5"), discount("-1")]
    )
    assert totals.amount == D("4.00")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([discount(), discounted()], ("lines.0.kind", "discount_without_discounted")),
        (
            [LineInput(rate=VAT13, amount=D(100)), discount()],
            ("lines.1.kind", "discount_without_discounted"),
        ),
        ([discounted(), discount(rate=VAT6)], ("lines.1.kind", "discount_rate_mismatch")),
        ([discounted(), discount("-100.01")], ("lines.1.kind", "discount_too_large")),
        (
            [discounted(), LineInput(rate=VAT13, amount=D(100))],
            ("lines.0.kind", "discounted_without_discount"),
        ),
    ],
)
def test_it_refuses_discounts_out_of_place(lines, expected):
    assert expected in invoice_violations(lines)


def twenty_two_lines(last_tax: str, others: str = "13.06") -> list[LineInput]:
    lines = [LineInput(rate=VAT13, amount=D("100.00"), tax=D(others)) for _ in range(21)]
    return [*lines, LineInput(rate=VAT13, amount=D("100.00"), tax=D(last_tax))]


@pytest.mark.parametrize(("last", "others"), [("13.01", "13.06"), ("12.99", "12.94")])
def test_it_accepts_an_invoice_tax_deviation_of_1_27(last, others):
    _lines, totals = check_invoice(twenty_two_lines(last, others))
    assert abs(totals.tax - D("286.00")) == D("1.27")


@pytest.mark.parametrize(("last", "others"), [("13.02", "13.06"), ("12.98", "12.94")])
def test_it_refuses_an_invoice_tax_deviation_of_1_28(last, others):
    assert invoice_violations(twenty_two_lines(last, others)) == [
        ("lines", "invoice_tax_tolerance")
    ]


def test_it_refuses_accumulated_rounding_beyond_the_invoice_tolerance():
    # 0.05 × 13% = 0.0065 prints as 0.01: each line adds 0.0035 of rounding.
    tiny = LineInput(rate=VAT13, amount=D("0.05"))
    assert check_invoice([tiny] * 300)[1].tax == D("3.00")
    assert invoice_violations([tiny] * 400) == [("lines", "invoice_tax_tolerance")]


def test_it_measures_tax_inclusive_lines_against_their_own_tax():
    lines = [LineInput(rate=VAT13, amount=D("113.00"), tax=D("13.06"), tax_inclusive=True)] * 21
    _lines, totals = check_invoice(lines)
    assert totals.tax == D("274.26")


def test_it_refuses_a_total_above_the_ceiling():
    half = LineInput(rate=RATES["exempt"], amount=D("600000000000.00"))
    assert invoice_violations([half, half]) == [("lines", "total_too_large")]


def test_it_refuses_a_blue_invoice_that_totals_zero():
    assert invoice_violations([discounted(), discount("-100.00")]) == [
        ("lines", "total_not_positive")
    ]


@settings(max_examples=50)
@given(st.lists(st.tuples(cents.filter(lambda c: c < 10**8), rates), min_size=1, max_size=20))
def test_it_accepts_any_invoice_of_computed_lines_with_few_lines(pairs):
    lines = [LineInput(rate=rate, amount=amount) for amount, rate in pairs]
    amounts, totals = check_invoice(lines)
    assert totals == compute_totals(amounts)


def test_it_exposes_rates_as_frozen_values():
    with pytest.raises(AttributeError):
        VAT13.value = D("0.2")  # type: ignore[misc]
    assert isinstance(VAT13, TaxRate)
