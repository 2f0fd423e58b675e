"""The workers never die of the database: SQLite's write lock held by another connection, a
PostgreSQL connection killed under them. They log, back off, retry and lose nothing.

(The test database on SQLite is shared-cache in memory, where a held write lock is refused at
once as "database table is locked"; on a file, as in production, the same OperationalError
comes after the busy timeout. Both are the error the workers must survive.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.exchange.consumer import Consumer
from piaotong.exchange.inbox import Outcome
from piaotong.exchange.models import OutboxEvent, PeerStatus
from piaotong.exchange.natslink import NatsLink
from piaotong.exchange.relay import Relay
from piaotong.exchange.tests.conftest import as_node, issue_many_elsewhere, register
from piaotong.exchange.tests.test_consumer import _publish
from piaotong.invoices.actions import do_issue_invoices
from piaotong.invoices.models import Invoice
from piaotong.testing import draft

pytestmark = pytest.mark.django_db(transaction=True)


def _wait(until: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert until()


class WriteLock:
    """Another connection holds a write transaction open until `release()`."""

    def __init__(self) -> None:
        if connection.vendor != "sqlite":
            pytest.skip("SQLite's one write lock; PostgreSQL: see the killed connections")
        self.held, self.released = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)
        self.thread.start()
        assert self.held.wait(10)

    def _hold(self) -> None:
        from django.db import connection as own

        try:
            with transaction.atomic():
                PeerStatus.objects.create(
                    node_id="lock-holder",
                    region="99",
                    role="regional",
                    relay_state="running",
                    reported_at=timezone.now(),
                )
                self.held.set()
                self.released.wait(30)
                transaction.set_rollback(True)
        finally:
            own.close()

    def release(self) -> None:
        self.released.set()
        self.thread.join(10)


@pytest.fixture
def publisher(nats_url: str) -> Iterator[NatsLink]:
    link = NatsLink(nats_url, "test-publisher")
    assert link.connect()
    link.ensure_stream()
    yield link
    link.close()


@contextmanager
def running(worker: Any) -> Iterator[threading.Thread]:
    thread = worker.start()
    try:
        yield thread
        assert thread.is_alive(), "the worker died"
    finally:
        worker.stop.set()
        thread.join(15)
        worker.link.close()


def test_the_consumer_waits_out_a_locked_database_and_loses_nothing(
    clerk: Any, org_a: Any, org_b: Any, publisher: NatsLink, nats_url: str, caplog: Any
) -> None:
    register("node-11", "11")
    sent = issue_many_elsewhere(clerk, org_a, [draft(org_b) for _ in range(3)])
    with as_node("node-31", "31"):
        consumer = Consumer(NatsLink(nats_url, "test-consumer"), fetch_timeout=0.3)
        with running(consumer):
            _wait(lambda: consumer.subscription is not None, 10)
            lock = WriteLock()
            try:
                _publish(publisher, *sent)
                _wait(lambda: consumer.database_failures >= 2, 10)  # retried, still alive
            finally:
                lock.release()
            _wait(lambda: consumer.outcomes.get(Outcome.APPLIED) == 3, 20)
            assert Invoice.objects.count() == 3
            info = consumer.link.consumer_info(consumer.durable)
            assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)
    assert consumer.outcomes == {Outcome.APPLIED: 3}  # no message lost, none applied twice
    assert "the database failed" in caplog.text


def test_the_relay_waits_out_a_locked_database_and_publishes_afterwards(
    clerk: Any, org_a: Any, org_b: Any, nats_url: str, caplog: Any
) -> None:
    do_issue_invoices(actor_for_user(clerk), org_a, [draft(org_b), draft(org_b)])
    relay = Relay(NatsLink(nats_url, "test-relay"))
    lock = WriteLock()
    try:
        with running(relay):  # started while the database is locked
            _wait(lambda: relay.failures >= 2, 10)
            lock.release()
            _wait(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), 15)
    finally:
        lock.release()
    assert "relay: this cycle failed" in caplog.text


def _kill_other_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(cursor.fetchall())


def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a killed PostgreSQL connection; SQLite is covered by the lock tests")


def test_the_relay_reconnects_after_postgresql_dropped_its_connection(
    clerk: Any, org_a: Any, org_b: Any, nats_url: str
) -> None:
    _postgresql_only()
    actor = actor_for_user(clerk)
    relay = Relay(NatsLink(nats_url, "test-relay"))
    unpublished = OutboxEvent.objects.filter(published_at__isnull=True)
    with running(relay):
        do_issue_invoices(actor, org_a, [draft(org_b)])
        _wait(lambda: not unpublished.exists(), 15)
        assert _kill_other_connections() >= 1  # the relay's
        do_issue_invoices(actor, org_a, [draft(org_b)])
        _wait(lambda: not unpublished.exists(), 15)


def test_the_consumer_reconnects_after_postgresql_dropped_its_connection(
    clerk: Any, org_a: Any, org_b: Any, publisher: NatsLink, nats_url: str
) -> None:
    _postgresql_only()
    register("node-11", "11")
    before, after = issue_many_elsewhere(clerk, org_a, [draft(org_b), draft(org_b)])
    with as_node("node-31", "31"):
        consumer = Consumer(NatsLink(nats_url, "test-consumer"), fetch_timeout=0.3)
        with running(consumer):
            _publish(publisher, before)
            # Generous waits: on a loaded CI machine the first batch once took over 15 s.
            _wait(lambda: consumer.outcomes.get(Outcome.APPLIED) == 1, 45)
            assert _kill_other_connections() >= 1  # the consumer's
            _publish(publisher, after)
            _wait(lambda: consumer.outcomes.get(Outcome.APPLIED) == 2, 45)
    assert consumer.outcomes == {Outcome.APPLIED: 2}
