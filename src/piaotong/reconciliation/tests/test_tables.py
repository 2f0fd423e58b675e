"""Column tables and the streamed result: the compact form an import uses must decide exactly
as the dataclasses do, and give back the same facts."""

from __future__ import annotations

from dataclasses import astuple
from decimal import Decimal

import pytest
from hypothesis import given, settings

from piaotong.reconciliation.matching import (
    InvoiceTable,
    NumberColumn,
    NumberIndex,
    RecordTable,
    Status,
    match,
    reconcile,
    to_cents,
)
from piaotong.reconciliation.tests.test_matching import (
    invoice,
    invoices_st,
    record_of,
    records_st,
)


def test_a_record_table_gives_back_each_record_as_read():
    records = [
        record_of(invoice(), row=2),
        record_of(invoice(), row=3, number="２６１１ 2000 0000 0000 0042", tax=None),
        record_of(invoice(), row=4, amount=Decimal("-0.05"), total=None, seller_name=""),
    ]
    table = RecordTable.of(records)
    assert len(table) == 3 and list(table) == records and table[1:] == records[1:]
    assert str(table[2].amount) == "-0.05" and table[0].total == Decimal("1060.00")


def test_an_invoice_table_gives_back_each_invoice():
    invoices = [invoice(7, lines=3), invoice(8, "26112000000000000099", total=Decimal("0.00"))]
    assert list(InvoiceTable.of(invoices)) == invoices


def test_amounts_finer_than_a_cent_are_refused_not_rounded():
    assert to_cents(Decimal("12.30")) == 1230
    with pytest.raises(ValueError, match="whole number of cents"):
        to_cents(Decimal("0.001"))


@settings(max_examples=200, deadline=None)
@given(records=records_st, invoices=invoices_st)
def test_tables_decide_exactly_as_the_dataclasses(records, invoices):
    from_lists = reconcile(records, invoices)
    from_tables = list(match(RecordTable.of(records), InvoiceTable.of(invoices)))
    assert [astuple(d) for d in from_tables] == [astuple(d) for d in from_lists]


@settings(max_examples=100, deadline=None)
@given(records=records_st, invoices=invoices_st)
def test_the_summary_counts_what_iterating_yields(records, invoices):
    result = match(records, invoices)
    decisions = list(result)
    counts: dict[str, int] = {}
    for decision in decisions:
        counts[decision.status.value] = counts.get(decision.status.value, 0) + 1
    assert result.summary() == counts and len(result) == len(decisions)
    assert set(counts) <= {status.value for status in Status}


def test_a_number_column_packs_numbers_and_keeps_anything_else_as_it_is():
    column = NumberColumn()
    values = ["26112000000000000042", "110019113012345678", "", "发票12", "x" * 25, "0042"]
    for value in values:
        column.append(value)
    assert list(column) == values and column[-1] == "0042" and len(column) == 6
    assert len(column.packed) == 6 * NumberColumn.WIDTH and set(column.other) == {3, 4}
    with pytest.raises(IndexError):
        column[6]


def test_a_number_index_finds_every_position_of_a_number_in_the_order_added():
    column = NumberColumn()
    index = NumberIndex(column, add_all=False)
    for n in range(3000):  # grows its table several times on the way
        column.append(f"26112{n % 1000:015d}")
        index.add(n)
    assert index.find("26112000000000000007") == [7, 1007, 2007]
    assert index.find("26112000000000009999") == []
    assert NumberIndex(column).find("26112000000000000999") == [999, 1999, 2999]
