"""The relay against a real nats-server: Msg-Id, stream sequence, no duplicates, NATS down."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import orjson
import pytest
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.exchange.actions import message_for
from piaotong.exchange.choices import WorkerState
from piaotong.exchange.models import OutboxEvent, WorkerStatus
from piaotong.exchange.natslink import STREAM, NatsLink
from piaotong.exchange.natsserver import LocalNats, free_port
from piaotong.exchange.relay import Relay
from piaotong.invoices.actions import do_issue_invoices
from piaotong.testing import draft


def _stream_messages(url: str) -> list[Any]:
    async def read() -> list[Any]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        sub = await js.pull_subscribe("piaotong.v1.*.*.InvoiceIssued", durable=None, stream=STREAM)
        try:
            msgs = await sub.fetch(1000, timeout=1)
        except nats.errors.TimeoutError:
            msgs = []
        await nc.close()
        return msgs

    return asyncio.run(read())


@pytest.fixture
def issued(clerk: Any, org_a: Any, org_b: Any) -> list[Any]:
    return do_issue_invoices(actor_for_user(clerk), org_a, [draft(org_b), draft(org_b)])


@pytest.fixture
def link(nats_url: str) -> Any:
    link = NatsLink(nats_url, "test-relay")
    yield link
    link.close()


def test_it_publishes_the_outbox_with_the_event_id_as_message_id(
    issued: list[Any], link: NatsLink, nats_url: str
) -> None:
    assert Relay(link).cycle() == 2
    rows = list(OutboxEvent.objects.select_related("ledger_event").order_by("id"))
    assert all(r.published_at and r.stream_seq for r in rows)
    assert [r.stream_seq for r in rows] == [1, 2] and all(r.attempts == 1 for r in rows)
    messages = _stream_messages(nats_url)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [
        str(r.ledger_event.event_id) for r in rows
    ]
    assert messages[0].subject == "piaotong.v1.11.31.InvoiceIssued"
    assert orjson.loads(messages[0].data) == orjson.loads(orjson.dumps(message_for(rows[0])))


def test_it_does_not_publish_twice_when_a_crash_lost_the_mark(
    issued: list[Any], link: NatsLink, nats_url: str
) -> None:
    relay = Relay(link)
    relay.cycle()
    # The relay died after the PubAck but before recording it: the rows look unpublished.
    OutboxEvent.objects.update(published_at=None, stream_seq=None)
    assert relay.cycle() == 2
    assert len(_stream_messages(nats_url)) == 2
    assert sorted(s or 0 for s in OutboxEvent.objects.values_list("stream_seq", flat=True)) == [
        1,
        2,
    ]


def test_it_keeps_rows_while_nats_is_down_and_publishes_them_when_it_is_back(
    issued: list[Any], tmp_path: Any, settings: Any
) -> None:
    port = free_port()
    link = NatsLink(f"nats://127.0.0.1:{port}", "test-relay", timeout=1)
    relay = Relay(link)
    try:
        assert relay.cycle() == 0
        assert relay.cycle() == 0
        assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 2
        oldest = OutboxEvent.objects.order_by("id").first()
        assert oldest.attempts == 2 and "cannot connect" in oldest.last_error
        assert WorkerStatus.objects.get(name="relay").state == WorkerState.NATS_DOWN
        server = LocalNats(tmp_path / "late", port=port).start()
        try:
            assert relay.cycle() == 2
            assert len(_stream_messages(server.url)) == 2
        finally:
            server.stop()
    finally:
        link.close()
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    assert WorkerStatus.objects.get(name="relay").state == WorkerState.RUNNING


def test_it_publishes_a_row_committed_after_a_higher_one(issued: list[Any], link: NatsLink) -> None:
    """No high-water mark: a lower id published late is still found."""
    first, second = OutboxEvent.objects.order_by("id")
    OutboxEvent.objects.filter(pk=second.pk).update(published_at=timezone.now(), stream_seq=99)
    assert Relay(link).cycle() == 1
    first.refresh_from_db()
    assert first.published_at is not None


@pytest.mark.django_db(transaction=True)
def test_it_is_woken_by_a_commit_and_publishes_within_a_second(
    clerk: Any, org_a: Any, org_b: Any, nats_url: str
) -> None:
    """In a thread, as in `serve`: LISTEN/NOTIFY on PostgreSQL, the in-process signal on SQLite."""
    link = NatsLink(nats_url, "test-relay-thread")
    relay = Relay(link)
    thread = relay.start()
    try:
        time.sleep(0.5)  # registered, listening, waiting
        do_issue_invoices(actor_for_user(clerk), org_a, [draft(org_b)])
        deadline = time.monotonic() + 1.5
        while OutboxEvent.objects.filter(published_at__isnull=True).exists():
            assert time.monotonic() < deadline, "not published within the poll bound"
            time.sleep(0.02)
    finally:
        relay.stop.set()
        thread.join(timeout=5)
        link.close()
    assert len(_stream_messages(nats_url)) == 1


@pytest.mark.django_db
def test_it_announces_this_node_again_when_the_announcement_was_not_stored(
    link: NatsLink, monkeypatch: Any
) -> None:
    """Until the hub has a node's key, the node's events wait everywhere: a lost announcement
    must not wait for the next regular one (5 minutes later)."""
    from piaotong.exchange.messages import REGISTRY_ANNOUNCE_SUBJECT
    from piaotong.exchange.natslink import Published

    relay, real, announced = Relay(link), link.publish_many, []

    def flaky(messages: Any) -> Any:
        if messages and messages[0][0] == REGISTRY_ANNOUNCE_SUBJECT:
            announced.append(messages[0][2]["Nats-Msg-Id"])
            if len(announced) == 1:
                return [Published(None, error="TimeoutError: no PubAck")]
        return real(messages)

    monkeypatch.setattr(link, "publish_many", flaky)
    relay._started_at = float("-inf")  # past its first 30 s: the regular interval (60 s)
    relay.cycle()
    relay.cycle()
    relay.cycle()
    assert len(announced) == 2  # failed, then stored; not again within ANNOUNCE_EVERY
    assert announced[0] != announced[1]  # each announcement its own message id
