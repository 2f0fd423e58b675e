"""The consumer against a real nats-server: filters, duplicates, reordering, a server restart,
batches applied in one transaction (poison and failures isolated)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from piaotong.exchange.apply import register_applier, unregister_applier
from piaotong.exchange.choices import FactSide
from piaotong.exchange.consumer import Consumer
from piaotong.exchange.inbox import Outcome
from piaotong.exchange.models import InboxEvent, QuarantinedEvent, WorkerStatus
from piaotong.exchange.natslink import NatsLink
from piaotong.exchange.tests.conftest import (
    SEEN,
    Sent,
    as_node,
    event_message,
    issue_elsewhere,
    issue_many_elsewhere,
    register,
)
from piaotong.invoices.models import Invoice
from piaotong.ledger.models import LedgerEvent
from piaotong.testing import draft


@pytest.fixture
def publisher(nats_url: str) -> Any:
    link = NatsLink(nats_url, "test-publisher")
    assert link.connect()
    link.ensure_stream()
    yield link
    link.close()


def _publish(link: NatsLink, *sent: Sent, msg_id: str = "") -> None:
    results = link.publish_many(
        [
            (
                s.subject,
                s.data,
                {"Nats-Msg-Id": msg_id or orjson.loads(s.data)["event"]["event_id"]},
            )
            for s in sent
        ]
    )
    assert all(r.stream_seq for r in results)


def _drain(consumer: Consumer, until: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        consumer.cycle()
    assert until()


@pytest.fixture
def consumer_31(nats_url: str) -> Any:
    with as_node("node-31", "31"):
        link = NatsLink(nats_url, "test-consumer")
        consumer = Consumer(link, fetch_timeout=0.3, stall_seconds=1.0)
        yield consumer
        link.close()


def test_it_applies_what_concerns_its_region_and_only_that(
    clerk: Any, org_a: Any, org_b: Any, publisher: NatsLink, consumer_31: Consumer
) -> None:
    register("node-11", "11")
    person = draft(
        None, buyer_name="个人", buyer_tax_id="", buyer_kind="person", kind="digital_ordinary"
    )
    to_shanghai, to_person = issue_many_elsewhere(clerk, org_a, [draft(org_b), person])
    _publish(publisher, to_person, to_shanghai)
    with as_node("node-31", "31"):
        _drain(consumer_31, lambda: Invoice.objects.count() == 1)
        for _ in range(3):
            consumer_31.cycle()
    assert Invoice.objects.get().buyer == org_b
    assert consumer_31.outcomes == {Outcome.APPLIED: 1}


def test_it_applies_redelivered_and_reordered_events_once_in_order(
    issued_pair: tuple[Sent, Sent, Sent], publisher: NatsLink, consumer_31: Consumer
) -> None:
    first, second, third = issued_pair
    # Reordered, and the first one published twice under two message ids (past the dedup).
    _publish(publisher, third, first)
    _publish(publisher, first, msg_id="again")
    _publish(publisher, second)
    with as_node("node-31", "31"):
        _drain(consumer_31, lambda: InboxEvent.objects.count() == 3)
        consumer_31.cycle()
    assert [seq for seq, _ in SEEN] == [2, 3]
    assert consumer_31.outcomes[Outcome.DUPLICATE] == 1


@pytest.fixture
def issued_pair(clerk: Any, org_a: Any, org_b: Any, noted_kind: str) -> tuple[Sent, Sent, Sent]:
    register("node-11", "11")
    first = issue_elsewhere(clerk, org_a, org_b)
    event = orjson.loads(first.data)["event"]
    second, second_hash = event_message(
        event["stream"], "node-11", 2, noted_kind, {"note": "a"}, event["hash"], schema_version=2
    )
    third, _ = event_message(
        event["stream"], "node-11", 3, noted_kind, {"note": "b"}, second_hash, schema_version=2
    )
    return first, second, third


def test_it_keeps_consuming_after_the_server_restarts(
    clerk: Any, org_a: Any, org_b: Any, nats_server: Any, publisher: NatsLink, consumer_31: Consumer
) -> None:
    register("node-11", "11")
    before, after = issue_many_elsewhere(clerk, org_a, [draft(org_b), draft(org_b)])
    _publish(publisher, before)
    with as_node("node-31", "31"):
        _drain(consumer_31, lambda: Invoice.objects.count() == 1)
        nats_server.restart()
        time.sleep(1.0)  # the clients reconnect
        _publish(publisher, after)
        _drain(consumer_31, lambda: Invoice.objects.count() == 2, seconds=20)
    assert WorkerStatus.objects.get(name="consumer").state in {"running", "stalled"}


def _after(sent: Sent, kind: str, payload: dict[str, Any]) -> Sent:
    """An event of `kind` by node-11 following `sent` in its stream."""
    event = orjson.loads(sent.data)["event"]
    message, _ = event_message(event["stream"], "node-11", 2, kind, payload, event["hash"], schema_version=2)  # fmt: skip
    return message


def _ack_pending(consumer: Consumer) -> int:
    return int(consumer.link.consumer_info(consumer.durable).num_ack_pending or 0)


def test_it_applies_a_fetched_batch_together_and_quarantines_the_poison_alone(
    clerk: Any, org_a: Any, org_b: Any, noted_kind: str, publisher: NatsLink, consumer_31: Consumer
) -> None:
    register("node-11", "11")
    first, second = issue_many_elsewhere(clerk, org_a, [draft(org_b), draft(org_b)])
    poison = _after(first, noted_kind, {"note": "x", "refuse": True})
    _publish(publisher, first, poison, second)
    with as_node("node-31", "31"):
        assert consumer_31.cycle() == 3  # one fetch, one transaction
        assert Invoice.objects.count() == 2
        assert QuarantinedEvent.objects.get().reason == "invalid_content"
        poison_id = orjson.loads(poison.data)["event"]["event_id"]
        assert not LedgerEvent.objects.filter(event_id=poison_id).exists()  # savepoint undone
        assert _ack_pending(consumer_31) == 0  # all three acknowledged after the commit
    assert consumer_31.outcomes == {Outcome.APPLIED: 2, Outcome.QUARANTINED: 1}


@pytest.fixture
def failing_kind() -> Any:
    """An apply-function with a bug: it raises something that is not a refusal."""

    @register_applier("InvoiceBroken", side=FactSide.SELLER, version=2)
    def apply_broken(event: Any) -> None:
        raise RuntimeError("a bug in an apply-function")

    yield "InvoiceBroken"
    unregister_applier("InvoiceBroken")


def test_a_message_that_fails_unexpectedly_comes_back_without_holding_back_the_batch(
    clerk: Any,
    org_a: Any,
    org_b: Any,
    failing_kind: str,
    publisher: NatsLink,
    consumer_31: Consumer,
) -> None:
    register("node-11", "11")
    first, second = issue_many_elsewhere(clerk, org_a, [draft(org_b), draft(org_b)])
    broken = _after(first, failing_kind, {"note": "x"})
    _publish(publisher, first, broken, second)
    with as_node("node-31", "31"):
        assert consumer_31.cycle() == 3
        assert Invoice.objects.count() == 2
        assert not QuarantinedEvent.objects.exists()
        assert InboxEvent.objects.count() == 2
        assert _ack_pending(consumer_31) == 1  # naked: the server hands it out again
        time.sleep(1.2)
        assert consumer_31.cycle() == 1
    assert consumer_31.outcomes == {Outcome.APPLIED: 2}


def test_it_takes_a_single_event_at_once_without_waiting_for_a_full_batch(
    clerk: Any, org_a: Any, org_b: Any, publisher: NatsLink, nats_url: str
) -> None:
    register("node-11", "11")
    sent = issue_elsewhere(clerk, org_a, org_b)
    with as_node("node-31", "31"):
        link = NatsLink(nats_url, "test-consumer-slow")
        consumer = Consumer(link, batch=200, fetch_timeout=5.0)
        try:
            assert consumer.subscribe()
            _publish(publisher, sent)
            started = time.monotonic()
            assert consumer.cycle() == 1
            assert time.monotonic() - started < 1.0  # not the 5 s fetch timeout
        finally:
            link.close()
