"""Red-letter, void and deduction facts reach the other party's node and the hub.

Seller A is served by node-11 (Beijing), buyer B by node-31 (Shanghai). A message "from
node-11" is produced by really acting at node-11 inside a savepoint that is rolled back, so the
receiving node starts without it; a buyer's fact "from node-31" is a hand-made event as node-31
writes it (the payloads of `invoices.redletter` and `deduction.actions`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import Role
from piaotong.deduction.queries import buyer_usage
from piaotong.exchange.actions import message_for
from piaotong.exchange.choices import ParkReason, QuarantineReason
from piaotong.exchange.inbox import Outcome
from piaotong.exchange.messages import dumps
from piaotong.exchange.models import InboxEvent, OutboxEvent, ParkedEvent, QuarantinedEvent
from piaotong.exchange.tests.conftest import Sent, as_node, event_message, register
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.choices import InvoiceKind, InvoiceStatus, RedLetterStatus
from piaotong.invoices.models import Invoice, RedLetterConfirmation
from piaotong.invoices.redletter import (
    RedLetterInput,
    do_request_red_letter,
    do_void_invoice,
)
from piaotong.invoices.redletter_rules import RedLineRequest
from piaotong.ledger.models import AuditEntry
from piaotong.ledger.verify import verify_ledger
from piaotong.lib.errors import RuleViolation
from piaotong.testing import draft, make_user


@pytest.fixture
def seller(org_a: Any) -> Actor:
    return actor_for_user(make_user("finance.a", org_a, Role.FINANCE_MANAGER))


@pytest.fixture(autouse=True)
def _registry(db: Any) -> None:
    register("node-11", "11")
    register("node-31", "31")


def at_node_11(work: Callable[[], Any]) -> tuple[Any, list[Sent]]:
    """Run `work` as node-11 and return its result and its outbox messages; rolled back."""
    with as_node("node-11", "11"), transaction.atomic():
        before = OutboxEvent.objects.aggregate(last=Max("id"))["last"] or 0
        result = work()
        rows = OutboxEvent.objects.select_related("ledger_event").filter(id__gt=before)
        sent = [Sent(row.subject, dumps(message_for(row))) for row in rows.order_by("id")]
        transaction.set_rollback(True)
    return result, sent


def deliver_all(node: tuple[str, str, str], messages: list[Sent]) -> list[Outcome]:
    with as_node(*node):
        return [m.deliver() for m in messages]


NODE_31 = ("node-31", "31", "regional")
HUB = ("hub", "00", "hub")


def buyer_event(
    invoice_stream: str, seq: int, kind: str, payload: dict[str, Any], prev_hash: str
) -> tuple[Sent, str]:
    """A buyer-side fact as node-31 writes it about an invoice of region 11."""
    return event_message(invoice_stream, "node-31", seq, kind, payload, prev_hash)


def partial_return() -> RedLetterInput:
    return RedLetterInput(reason="02", full=False, lines=[RedLineRequest(1, Decimal("100.00"))])


# --- Red-letter and void facts of the seller's node, at the buyer's node and the hub ------------


def issue_and_reverse(org_a: Any, org_b: Any, seller: Actor) -> tuple[str, list[Sent]]:
    """At node-11: A issues to B and reverses in full at once (B has not used it)."""

    def work() -> str:
        blue = do_issue_new_invoice(seller, org_a, draft(org_b))
        do_request_red_letter(seller, blue, "seller", RedLetterInput(reason="01"))
        return str(blue.number)

    return at_node_11(work)


def test_it_red_flushes_the_replica_at_the_buyers_node(
    org_a: Any, org_b: Any, seller: Actor
) -> None:
    number, sent = issue_and_reverse(org_a, org_b, seller)
    assert [orjson.loads(s.data)["event"]["kind"] for s in sent] == [
        "InvoiceIssued",
        "RedLetterRequested",
        "InvoiceIssued",
        "InvoiceRedFlushed",
    ]
    issued, requested, _red_issued, flushed = sent
    assert deliver_all(NODE_31, [issued, requested, flushed]) == [Outcome.APPLIED] * 3
    blue = Invoice.objects.get(number=number)
    assert blue.status == InvoiceStatus.FULLY_RED_FLUSHED
    confirmation = RedLetterConfirmation.objects.get(blue_invoice=blue)
    assert confirmation.status == RedLetterStatus.ISSUED
    assert confirmation.red_number and confirmation.red_number != number
    assert list(verify_ledger()) == []


def test_it_replicates_the_red_invoice_itself(org_a: Any, org_b: Any, seller: Actor) -> None:
    number, sent = issue_and_reverse(org_a, org_b, seller)
    assert deliver_all(NODE_31, sent) == [Outcome.APPLIED] * 4
    assert Invoice.objects.get(red_of__number=number).total_amount < 0


def test_it_parks_a_flush_that_overtook_its_request_and_applies_it_in_order(
    org_a: Any, org_b: Any, seller: Actor
) -> None:
    number, (issued, requested, _red_issued, flushed) = issue_and_reverse(org_a, org_b, seller)
    with as_node(*HUB):
        assert issued.deliver() == Outcome.APPLIED
        assert flushed.deliver() == Outcome.PARKED
        assert requested.deliver() == Outcome.APPLIED  # and its parked successor with it
    assert not ParkedEvent.objects.exists()
    assert Invoice.objects.get(number=number).status == InvoiceStatus.FULLY_RED_FLUSHED


def test_it_voids_the_replica_of_a_paper_invoice(org_a: Any, org_b: Any, seller: Actor) -> None:
    def issue_and_void() -> str:
        paper = do_issue_new_invoice(seller, org_a, draft(org_b, kind=InvoiceKind.PAPER_SPECIAL))
        do_void_invoice(seller, paper, "开票信息填错")
        return str(paper.number)

    number, sent = at_node_11(issue_and_void)
    assert deliver_all(HUB, sent) == [Outcome.APPLIED, Outcome.APPLIED]
    replica = Invoice.objects.get(number=number)
    assert replica.status == InvoiceStatus.VOIDED and replica.voided_at is not None
    assert AuditEntry.objects.filter(action="invoice.voided_received").count() == 1


# --- The buyer's answers, at the seller's node ----------------------------------------------


def answer(confirmation: RedLetterConfirmation, by: str = "buyer") -> dict[str, Any]:
    return {
        "confirmation": str(confirmation.uid),
        "blue_number": confirmation.blue_invoice.number,
        "by": by,
        "answered_by": "shanghai.finance",
        "answered_at": timezone.now().isoformat(),
    }


@pytest.fixture
def pending_request(org_a: Any, org_b: Any, seller: Actor) -> RedLetterConfirmation:
    """At node-11 (this test's own node): A asks B to confirm a partial reversal."""
    blue = do_issue_new_invoice(seller, org_a, draft(org_b))
    return do_request_red_letter(seller, blue, "seller", partial_return())


def test_it_issues_the_red_invoice_when_the_buyers_confirmation_arrives(
    pending_request: RedLetterConfirmation,
) -> None:
    blue = pending_request.blue_invoice
    confirmed, _ = buyer_event(blue.stream, 1, "RedLetterConfirmed", answer(pending_request), "")
    with as_node("node-11", "11"):
        assert confirmed.deliver() == Outcome.APPLIED
    pending_request.refresh_from_db()
    assert pending_request.status == RedLetterStatus.ISSUED
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.PARTIALLY_RED_FLUSHED
    # The seller's node wrote the red invoice and the flush, queued for node-31 and the hub.
    queued = OutboxEvent.objects.filter(published_at=None).values_list("subject", flat=True)
    assert "piaotong.v1.11.31.InvoiceRedFlushed" in set(queued)
    assert InboxEvent.objects.get().writer == "node-31"


def test_it_quarantines_an_answer_the_buyers_node_gives_in_the_sellers_name(
    pending_request: RedLetterConfirmation,
) -> None:
    blue = pending_request.blue_invoice
    forged, _ = buyer_event(
        blue.stream, 1, "RedLetterConfirmed", answer(pending_request, by="seller"), ""
    )
    with as_node("node-11", "11"):
        assert forged.deliver() == Outcome.QUARANTINED
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.WRONG_WRITER
    pending_request.refresh_from_db()
    assert pending_request.status == RedLetterStatus.PENDING


def test_it_refuses_an_answer_carried_on_another_invoices_stream(
    pending_request: RedLetterConfirmation, org_a: Any, org_b: Any, seller: Actor
) -> None:
    other = do_issue_new_invoice(seller, org_a, draft(org_b))
    moved, _ = buyer_event(other.stream, 1, "RedLetterConfirmed", answer(pending_request), "")
    with as_node("node-11", "11"):
        assert moved.deliver() == Outcome.QUARANTINED
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.CONFLICT


def test_it_wakes_an_answer_that_reached_the_hub_before_the_request(
    org_a: Any, org_b: Any, seller: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    def issue_and_ask() -> RedLetterConfirmation:
        blue = do_issue_new_invoice(seller, org_a, draft(org_b))
        return do_request_red_letter(seller, blue, "seller", partial_return())

    confirmation, (issued, requested) = at_node_11(issue_and_ask)
    confirmed, _ = buyer_event(
        confirmation.blue_invoice.stream, 1, "RedLetterConfirmed", answer(confirmation), ""
    )
    with as_node(*HUB):
        assert issued.deliver() == Outcome.APPLIED
        assert confirmed.deliver() == Outcome.PARKED
        assert ParkedEvent.objects.get().reason == ParkReason.GAP
        with django_capture_on_commit_callbacks(execute=True):
            assert requested.deliver() == Outcome.APPLIED
    assert not ParkedEvent.objects.exists()
    held = RedLetterConfirmation.objects.get(uid=confirmation.uid)
    assert held.status == RedLetterStatus.CONFIRMED  # the hub issues nothing itself
    assert InboxEvent.objects.count() == 3


# --- Deduction facts of the buyer's node, at the seller's node and the hub --------------------


def usage_events(stream: str, tax_id: str) -> list[Sent]:
    facts = [
        ("InvoiceBooked", {"buyer_tax_id": tax_id, "booked_at": timezone.now().isoformat()}),
        (
            "DeductionSelected",
            {
                "buyer_tax_id": tax_id,
                "period": timezone.localdate().strftime("%Y%m"),
                "purpose": "deduct",
                "reason": "",
                "face_tax": "60.00",
                "effective_tax": "60.00",
            },
        ),
        ("DeductionConfirmed", {"buyer_tax_id": tax_id, "period": "202601", "purpose": "deduct"}),
    ]
    sent, prev = [], ""
    for seq, (kind, payload) in enumerate(facts, start=1):
        message, prev = buyer_event(stream, seq, kind, payload, prev)
        sent.append(message)
    return sent


def test_it_tells_the_seller_what_the_buyer_did_with_the_invoice(
    org_a: Any, org_b: Any, seller: Actor
) -> None:
    blue = do_issue_new_invoice(seller, org_a, draft(org_b))
    booked, selected, confirmed = usage_events(blue.stream, org_b.tax_id)
    seen = []
    with as_node("node-11", "11"):
        seen.append(buyer_usage(blue))
        for message in (booked, selected, confirmed):
            assert message.deliver() == Outcome.APPLIED
            seen.append(buyer_usage(blue))
        # The buyer has used it: the seller's full reversal now needs the buyer's confirmation.
        confirmation = do_request_red_letter(seller, blue, "seller", RedLetterInput(reason="01"))
    assert seen == ["", "booked", "selected", "confirmed"]
    assert confirmation.status == RedLetterStatus.PENDING
    assert AuditEntry.objects.filter(action="purchase.use_received").count() == 3


def test_it_refuses_to_void_a_paper_invoice_the_buyer_booked_on_its_node(
    org_a: Any, org_b: Any, seller: Actor
) -> None:
    paper = do_issue_new_invoice(seller, org_a, draft(org_b, kind=InvoiceKind.PAPER_SPECIAL))
    booked = usage_events(paper.stream, org_b.tax_id)[0]
    with as_node("node-11", "11"):
        assert booked.deliver() == Outcome.APPLIED
        with pytest.raises(RuleViolation) as raised:
            do_void_invoice(seller, paper, "mistake")
    assert raised.value.code == "buyer_used"


def test_it_refuses_a_use_stated_by_someone_other_than_the_buyer(
    org_a: Any, org_b: Any, seller: Actor
) -> None:
    blue = do_issue_new_invoice(seller, org_a, draft(org_b))
    stranger = usage_events(blue.stream, "91310000MA1FL0000X")[0]
    by_seller_node, _ = event_message(
        blue.stream,
        "node-11",
        99,
        "InvoiceBooked",
        {"buyer_tax_id": org_b.tax_id, "booked_at": "x"},
        "",
    )
    with as_node("hub", "00", "hub"):
        assert stranger.deliver() == Outcome.QUARANTINED
        assert by_seller_node.deliver() == Outcome.QUARANTINED
    reasons = set(QuarantinedEvent.objects.values_list("reason", flat=True))
    assert reasons == {QuarantineReason.CONFLICT, QuarantineReason.WRONG_WRITER}


def test_it_parks_a_booking_that_reached_the_hub_before_the_invoice(
    org_a: Any, org_b: Any, seller: Actor, django_capture_on_commit_callbacks: Any
) -> None:
    blue, (issued,) = at_node_11(lambda: do_issue_new_invoice(seller, org_a, draft(org_b)))
    booked = usage_events(blue.stream, org_b.tax_id)[0]
    with as_node(*HUB):
        assert booked.deliver() == Outcome.PARKED
        with django_capture_on_commit_callbacks(execute=True):
            assert issued.deliver() == Outcome.APPLIED
        assert buyer_usage(Invoice.objects.get(number=blue.number)) == "booked"
    assert not ParkedEvent.objects.exists()


def test_it_records_a_buyers_period_statistics_at_the_hub(org_b: Any) -> None:
    stream = f"deduction-period:{uuid.uuid4()}"
    payload = {"buyer_tax_id": org_b.tax_id, "period": "202601", "statistics": {"count": 1}}
    applied, _ = event_message(
        stream, "node-31", 1, "DeductionStatisticsApplied", payload, "", "31", "31"
    )
    with as_node(*HUB):
        assert applied.deliver() == Outcome.APPLIED
    assert AuditEntry.objects.get(action="deduction.period_received").details["period"] == "202601"


# --- Events a node keeps for itself must not break the order of what it publishes -------------


def test_a_rendered_document_does_not_hold_back_a_later_red_flush(
    org_a: Any, org_b: Any, seller: Actor, media_root: Any
) -> None:
    """A rendered document's hash is recorded in the seller node's ledger but never published:
    a peer orders each invoice stream by (writer, seq) and would wait forever for it."""
    from piaotong.documents.actions import get_document
    from piaotong.ledger.models import LedgerEvent

    def work() -> str:
        blue = do_issue_new_invoice(seller, org_a, draft(org_b))
        get_document(blue, "xml")
        assert LedgerEvent.objects.filter(kind="DocumentRendered").exists()
        do_request_red_letter(seller, blue, "seller", RedLetterInput(reason="01"))
        return str(blue.number)

    number, sent = at_node_11(work)
    outcomes = deliver_all(NODE_31, sent)
    assert Outcome.PARKED not in outcomes, outcomes
    assert not ParkedEvent.objects.exists()
    assert Invoice.objects.get(number=number).status == InvoiceStatus.FULLY_RED_FLUSHED
