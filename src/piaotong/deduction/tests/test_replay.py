"""A buyer's node restored from an old backup rebuilds its deduction rows from its own events,
which recovery takes back from the hub (`deduction.replay`, exchange.recovery).

The pattern of the exchange's recovery tests: what the node did after its backup runs in a
transaction whose outbox rows are captured as the hub would answer them, then rolled back (the
restore lost it); recovery with a hub answering from those rows must bring back every row as it
was, and what the return (申报) computes from them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.db import transaction
from django.utils import timezone

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation
from piaotong.deduction.actions import (
    SelectionItem,
    do_apply_statistics,
    do_book_invoice,
    do_close_period_for_return,
    do_confirm_deduction,
    do_revoke_selection,
    do_revoke_statistics,
    do_select_for_deduction,
)
from piaotong.deduction.choices import PeriodStatus
from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import period_of, previous_period
from piaotong.deduction.queries import buyer_usage
from piaotong.deduction.replay import UNKNOWN_LABEL
from piaotong.deduction.tests.conftest import hub_marks
from piaotong.exchange import recovery
from piaotong.exchange.actions import message_for
from piaotong.exchange.messages import dumps
from piaotong.exchange.models import OutboxEvent
from piaotong.exchange.tests.conftest import (
    FakeHub,
    as_node,
    event_message,
    register_cluster,
)
from piaotong.filing.actions import check_period, compute_numbers
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger
from piaotong.testing import draft, make_user

NODE_11 = ("node-11", "11")
NODE_31 = ("node-31", "31")


@pytest.fixture
def registry(db: Any, settings: Any) -> None:
    register_cluster(settings)


@pytest.fixture
def at_node_11(registry: None) -> Iterator[None]:
    with as_node(*NODE_11):
        yield


def _as_hub_answers(block: Callable[[], Any]) -> list[list[Any]]:
    """Run `block` in a transaction that is rolled back; its outbox rows as the hub answers
    recovery (subject, message, stream sequence, received time), oldest first."""
    with transaction.atomic():
        before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        block()
        rows = OutboxEvent.objects.select_related("ledger_event").filter(id__gt=before)
        items = [
            [row.subject, orjson.loads(dumps(message_for(row))), 100 + i, None]
            for i, row in enumerate(rows.order_by("id"))
        ]
        transaction.set_rollback(True)
    return items


def deduction_state(buyer: Organisation) -> dict[str, Any]:
    """Every deduction row of the buyer by its natural keys (ids differ after a rebuild)."""
    bookings = sorted(
        Booking.objects.filter(buyer=buyer).values_list(
            "invoice__number", "booked_at", "booked_by_label"
        )
    )
    periods = sorted(
        DeductionPeriod.objects.filter(buyer=buyer).values_list(
            "period",
            "uid",
            "status",
            "statistics",
            "counted_at",
            "confirmed_at",
            "confirmed_by_label",
            "closed_by_return",
        )
    )
    selections = sorted(
        DeductionSelection.objects.filter(deduction_period__buyer=buyer).values_list(
            "invoice__number",
            "deduction_period__period",
            "purpose",
            "reason",
            "face_amount",
            "face_tax",
            "effective_tax",
            "selected_at",
            "selected_by_label",
            "revoked_at",
            "revoked_by_label",
        ),
        key=lambda row: (row[0], row[7]),
    )
    return {"bookings": bookings, "periods": periods, "selections": selections}


def returns(buyer: Organisation, periods: list[str]) -> dict[str, Any]:
    """What the VAT return (申报) of each period computes from the rows."""
    return {code: compute_numbers(buyer, check_period(buyer, code)) for code in periods}


def _recover(items: list[list[Any]], foreign: list[list[Any]] | None = None) -> dict[str, int]:
    recovery.do_mark_restored("node.ptbk", timezone.now() - timedelta(minutes=5))
    result = recovery.recover(FakeHub(list(reversed(items)), foreign), stream_seq=1)
    assert result.complete, result
    return result.counts


@pytest.mark.usefixtures("at_node_11")
def test_it_rebuilds_the_buyers_bookings_selections_and_periods_after_a_restore(
    issue: Callable[..., Invoice], buyer: Organisation, buyer_actor: Actor
) -> None:
    this = period_of(date.today())
    last, older = previous_period(this), previous_period(previous_period(this))
    invoices = [issue() for _ in range(6)]
    for invoice in invoices[:2]:  # received last month: selectable in both periods
        hub_marks(invoice, issue_date=date.today().replace(day=1) - timedelta(days=3))
    first, second, third, fourth, fifth, sixth = invoices
    # In the backup: a booking, last month's period confirmed, a selection in this one.
    do_book_invoice(buyer_actor, first)
    do_select_for_deduction(buyer_actor, buyer, last, [SelectionItem(first)])
    do_apply_statistics(buyer_actor, buyer, last)
    do_confirm_deduction(buyer_actor, buyer, last)
    do_select_for_deduction(buyer_actor, buyer, this, [SelectionItem(third)])
    in_backup = deduction_state(buyer)
    state_after: dict[str, Any] = {}

    def after_the_backup() -> None:
        for invoice in (second, third, fourth):
            do_book_invoice(buyer_actor, invoice)
        do_select_for_deduction(
            buyer_actor,
            buyer,
            this,
            [
                SelectionItem(second, deduct=False, reason="1"),
                SelectionItem(fourth, effective_tax=Decimal("10.00")),
                SelectionItem(fifth),
            ],
        )
        do_revoke_selection(buyer_actor, fifth)
        do_apply_statistics(buyer_actor, buyer, this)
        do_revoke_statistics(buyer_actor, buyer, this)
        do_select_for_deduction(buyer_actor, buyer, this, [SelectionItem(sixth)])
        do_revoke_selection(buyer_actor, sixth)
        do_select_for_deduction(buyer_actor, buyer, this, [SelectionItem(sixth)])  # again
        do_apply_statistics(buyer_actor, buyer, this)
        do_confirm_deduction(buyer_actor, buyer, this)
        with transaction.atomic():  # a return filed for an empty period closes it
            do_close_period_for_return(buyer_actor, buyer, older)
        state_after.update(
            rows=deduction_state(buyer),
            returns=returns(buyer, [last, this]),
            usage=[buyer_usage(invoice) for invoice in invoices],
        )

    items = _as_hub_answers(after_the_backup)
    assert deduction_state(buyer) == in_backup  # the restore lost it

    counts = _recover(items)

    assert counts["own_applied"] == len(items)
    assert deduction_state(buyer) == state_after["rows"]
    assert returns(buyer, [last, this]) == state_after["returns"]
    assert [buyer_usage(invoice) for invoice in invoices] == state_after["usage"]
    assert DeductionPeriod.objects.get(buyer=buyer, period=this).status == PeriodStatus.CONFIRMED
    assert DeductionPeriod.objects.get(buyer=buyer, period=older).closed_by_return
    assert list(verify_ledger()) == []
    assert AuditEntry.objects.filter(action="deduction.recovered").count() == len(items)
    ids = [item[1]["event"]["event_id"] for item in items]
    resent = OutboxEvent.objects.filter(ledger_event__event_id__in=ids, published_at=None)
    assert not resent.exists()


def test_it_waits_for_an_invoice_the_seller_issued_after_the_buyers_backup(
    registry: None, org_a: Organisation, org_b: Organisation, clerk: Any
) -> None:
    """At the buyer's node (31), the booking and selection of an invoice node 11 issued after
    31's backup wait until recovery brings the invoice among the other nodes' events."""
    finance_b = actor_for_user(make_user("finance.b", org_b, Role.FINANCE_MANAGER))
    this = period_of(date.today())
    state_after: dict[str, Any] = {}

    with transaction.atomic():
        with as_node(*NODE_11):
            foreign = _as_hub_answers_kept(
                lambda: do_issue_new_invoice(actor_for_user(clerk), org_a, draft(org_b))
            )

        def at_buyer() -> None:
            invoice = Invoice.objects.get()
            do_book_invoice(finance_b, invoice)
            do_select_for_deduction(finance_b, org_b, this, [SelectionItem(invoice)])
            state_after.update(rows=deduction_state(org_b))

        with as_node(*NODE_31):
            own = _as_hub_answers(at_buyer)
        transaction.set_rollback(True)

    assert not Invoice.objects.exists()
    with as_node(*NODE_31):
        counts = _recover(own, foreign)
    assert counts["own_applied"] == 2 and counts["foreign_applied"] == 1
    assert deduction_state(org_b) == state_after["rows"]
    assert state_after["rows"]["selections"]


def _as_hub_answers_kept(block: Callable[[], Any]) -> list[list[Any]]:
    """Like `_as_hub_answers`, but what `block` wrote stays (the caller rolls it back later)."""
    before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    block()
    rows = OutboxEvent.objects.select_related("ledger_event").filter(id__gt=before)
    return [
        [row.subject, orjson.loads(dumps(message_for(row))), 200 + i, None]
        for i, row in enumerate(rows.order_by("id"))
    ]


@pytest.mark.usefixtures("at_node_11")
def test_it_rebuilds_from_events_of_an_earlier_version_as_closely_as_they_allow(
    issue: Callable[..., Invoice], buyer: Organisation
) -> None:
    """Events written before they carried who, the period's uid and the face amount: the
    booking's author is unknown, the selection's time is the event's, the period takes the uid
    its statistics event names."""
    invoice = issue()
    this = period_of(date.today())
    tax_id = buyer.tax_id
    period_uid = uuid.uuid4()
    stream = f"deduction-period:{period_uid}"
    booked_at = timezone.now() - timedelta(minutes=1)
    facts = [
        (invoice.stream, 2, "InvoiceBooked", {"buyer_tax_id": tax_id, "booked_at": booked_at}),
        (
            invoice.stream,
            3,
            "DeductionSelected",
            {
                "buyer_tax_id": tax_id,
                "period": this,
                "purpose": "deduct",
                "reason": "",
                "face_tax": str(invoice.total_tax),
                "effective_tax": str(invoice.total_tax),
            },
        ),
        (
            stream,
            1,
            "DeductionStatisticsApplied",
            {"buyer_tax_id": tax_id, "period": this, "statistics": {"totals": {}}},
        ),
    ]
    issued = LedgerEvent.objects.get(stream=invoice.stream)  # this node's, in the backup
    items, prev = [], {invoice.stream: issued.hash, stream: ""}
    for stream_name, seq, kind, payload in facts:
        sent, prev[stream_name] = event_message(
            stream_name, "node-11", seq, kind, payload, prev[stream_name], "11", "11"
        )
        items.append([sent.subject, orjson.loads(sent.data), seq, None])
    _recover(items)
    booking = Booking.objects.get()
    assert booking.booked_by_label == UNKNOWN_LABEL and booking.booked_at == booked_at
    selection = DeductionSelection.objects.get()
    assert selection.face_amount == invoice.total_amount
    assert selection.selected_at == LedgerEvent.objects.get(kind="DeductionSelected").occurred_at
    period_row = DeductionPeriod.objects.get()
    assert period_row.uid == period_uid and period_row.status == PeriodStatus.COUNTED
