"""The consumer worker (收件消费者): a durable pull consumer per node, explicit acks.

Filters: the hub takes everything (`piaotong.v1.>`); a regional node R takes what concerns R as
seller or buyer (`piaotong.v1.R.*.>`, `piaotong.v1.*.R.>`) and the hub's registry. JetStream
delivers a stream message once per consumer even where two filters match it (R sells to R).

A fetched batch goes through `inbox.receive_batch`: one transaction (one commit) for the whole
batch, a savepoint per message. The batch's messages are acknowledged only after the commit; a
message that failed on its own is negatively acknowledged with a delay, so it comes back. When
the database cannot be used (SQLite's write lock held past the busy timeout, a lost PostgreSQL
connection) nothing was committed: the worker logs, backs off (up to 5 s), keeps the messages
(`in_progress`, so the server does not hand them out again) and retries the batch; it never
dies of it. Fetching waits up to `fetch_timeout` for the first message and then takes whatever
else is there within `linger` (20 ms), so one event at a low rate is applied at once and a
backlog is applied `batch` messages per commit.

A watchdog checks the consumer every few seconds: when messages are pending but none arrived for
`stall_seconds`, or the consumer vanished (a server restarted without its store), it re-creates
the consumer and the pull subscription (nats-py can stop pulling after a server restart).

Peers' heartbeats (core NATS, `piaotong.heartbeat.<node>`) are recorded as `PeerStatus` rows,
and trace requests (`piaotong.trace.<this node>`) are answered (`trace_remote.TraceResponder`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import orjson
from django.db import close_old_connections, connection
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from piaotong.exchange.choices import WorkerState
from piaotong.exchange.config import number
from piaotong.exchange.inbox import DATABASE_UNAVAILABLE, Outcome, receive_batch
from piaotong.exchange.messages import HEARTBEAT_PREFIX, REGISTRY_NODES_SUBJECT, SUBJECT_PREFIX
from piaotong.exchange.natslink import NatsLink
from piaotong.exchange.nodes import NodeIdentity, do_register_this_node, this_node
from piaotong.exchange.status import Reporter, record_peer_heartbeat
from piaotong.exchange.trace_remote import TraceResponder

log = logging.getLogger(__name__)
WATCH_EVERY = 5.0
MAX_BACKOFF = 5.0


def filter_subjects(node: NodeIdentity) -> list[str]:
    """
    >>> filter_subjects(NodeIdentity("node-31", "regional", "31"))
    ['piaotong.v1.31.*.>', 'piaotong.v1.*.31.>', 'piaotong.v1.registry.nodes']
    >>> filter_subjects(NodeIdentity("hub", "hub", "00"))
    ['piaotong.v1.>']
    """
    if node.is_hub:
        return [f"{SUBJECT_PREFIX}.>"]
    region = node.region
    return [
        f"{SUBJECT_PREFIX}.{region}.*.>",
        f"{SUBJECT_PREFIX}.*.{region}.>",
        REGISTRY_NODES_SUBJECT,
    ]


def durable_name(node: NodeIdentity) -> str:
    """
    >>> durable_name(NodeIdentity("node.11 a", "regional", "11"))
    'piaotong-node_11_a'
    """
    return "piaotong-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in node.node_id)


class Consumer:
    """Pulls and applies this node's messages. `run()` in a worker, `start()` in a thread."""

    def __init__(
        self,
        link: NatsLink,
        batch: int = 1000,
        fetch_timeout: float = 1.0,
        stall_seconds: float = 15.0,
        linger: float = 0.02,
    ) -> None:
        self.link, self.batch, self.fetch_timeout = link, batch, fetch_timeout
        self.linger = linger
        self.database_failures = 0  # batches retried because the database could not be used
        self.stall_seconds = stall_seconds
        self.node = this_node()
        self.durable = durable_name(self.node)
        self.reporter = Reporter("consumer")
        self.stop = threading.Event()
        self.subscription: Any = None
        self.outcomes: dict[str, int] = {}
        self.resubscribed = 0
        self._last_message_at = time.monotonic()
        self._watched_at = float("-inf")
        self._heartbeats: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._core_subscribed = False
        self.trace_responder = TraceResponder(self.node.node_id)

    # --- subscription ---------------------------------------------------------------------

    def subscribe(self) -> bool:
        """(Re)create the durable consumer and the pull subscription; False if NATS is down."""
        if not self.link.connect():
            return False
        try:
            self.link.ensure_stream(int(number("PIAOTONG_NATS_REPLICAS", 1)))
            self.link.ensure_consumer(self.durable, filter_subjects(self.node))
            if self.subscription is not None:
                self.link.unsubscribe(self.subscription)
            self.subscription = self.link.pull_subscription(self.durable)
            if not self._core_subscribed:  # nats-py renews core subscriptions on reconnect
                self.link.subscribe_core(f"{HEARTBEAT_PREFIX}.>", self._on_heartbeat)
                self.link.subscribe_core(
                    self.trace_responder.subject, self.trace_responder.on_request
                )
                self._core_subscribed = True
        except Exception as exc:
            self.link.last_error = f"cannot subscribe: {exc!r}"
            self.subscription = None
            return False
        self._last_message_at = time.monotonic()
        return True

    async def _on_heartbeat(self, msg: Msg) -> None:
        self._heartbeats.put(msg.data)

    def _record_heartbeats(self) -> None:
        while not self._heartbeats.empty():
            try:
                report = orjson.loads(self._heartbeats.get_nowait())
                if report.get("node_id") != self.node.node_id:
                    record_peer_heartbeat(report)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("bad heartbeat: %s", exc)

    # --- one cycle ------------------------------------------------------------------------

    def handle(self, messages: list[Msg]) -> list[Outcome | None]:
        """Apply a batch in one transaction, then acknowledge it; None for a message that must
        come back later. Retries the whole batch while the database cannot be used."""
        batch = [(msg.data, msg.subject, _stream_seq(msg)) for msg in messages]
        failures = 0
        while True:
            try:
                outcomes = receive_batch(batch)
                break
            except DATABASE_UNAVAILABLE as exc:
                failures += 1
                self.database_failures += 1
                delay = min(MAX_BACKOFF, 0.25 * 2**failures)
                log.warning(
                    "consumer: the database failed (%s); retrying %d messages in %.1f s",
                    exc,
                    len(messages),
                    delay,
                )
                if not connection.in_atomic_block:
                    close_old_connections()  # a broken connection is replaced on next use
                self._keep(messages)
                if self.stop.wait(delay):
                    self._quietly(self.link.nak_many, messages)  # let the next run have them
                    return [None] * len(messages)
        done = [m for m, o in zip(messages, outcomes, strict=True) if o is not None]
        again = [m for m, o in zip(messages, outcomes, strict=True) if o is None]
        self._quietly(self.link.ack_many, done)  # lost acks: redelivered, then duplicates
        self._quietly(self.link.nak_many, again, 1.0)
        for outcome in outcomes:
            if outcome is not None:
                self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return outcomes

    def _keep(self, messages: list[Msg]) -> None:
        """Still working on them: restart their ack wait so the server keeps them ours."""
        self._quietly(self.link.in_progress_many, messages)

    def _quietly(self, send: Any, messages: list[Msg], *args: Any) -> None:
        try:
            send(messages, *args)
        except Exception as exc:  # NATS went away: the server redelivers after ack_wait
            log.warning("consumer: could not answer %d messages: %r", len(messages), exc)

    def cycle(self) -> int:
        """Fetch and apply one batch; the number of messages handled."""
        now = time.monotonic()
        if self.subscription is None and not self.subscribe():
            self.reporter.report(WorkerState.NATS_DOWN, self.link.last_error, None, now)
            self.stop.wait(1.0)
            return 0
        try:
            messages = self.link.fetch(
                self.subscription, self.batch, self.fetch_timeout, self.linger
            )
        except Exception as exc:
            self.link.last_error = f"fetch failed: {exc!r}"
            messages = []
            self.stop.wait(0.5)
        if messages:
            self.handle(messages)
            self._last_message_at = time.monotonic()
        self._record_heartbeats()
        self._watch(time.monotonic())
        return len(messages)

    def _watch(self, now: float) -> None:
        """The stall watchdog: re-subscribe when messages wait but none arrive."""
        if now - self._watched_at < WATCH_EVERY:
            return
        self._watched_at = now
        try:
            info = self.link.consumer_info(self.durable)
        except NotFoundError:
            log.warning("consumer: %s vanished; re-creating it", self.durable)
            self._resubscribe(now)
            return
        except Exception as exc:
            self.reporter.report(WorkerState.NATS_DOWN, f"{exc!r}", None, now)
            if not self.link.is_connected:
                return
            self._resubscribe(now)
            return
        waiting = info.num_pending or 0
        pending = waiting + (info.num_ack_pending or 0)
        stalled = waiting > 0 and now - self._last_message_at > self.stall_seconds
        if stalled:
            log.warning(
                "consumer: %d pending but nothing for %.0f s; re-subscribing",
                waiting,
                now - self._last_message_at,
            )
            self.reporter.report(WorkerState.STALLED, "re-subscribing", pending, now)
            self._resubscribe(now)
            return
        self.reporter.report(WorkerState.RUNNING, "", pending, now)

    def _resubscribe(self, now: float) -> None:
        self.resubscribed += 1
        self.subscription = None
        self.subscribe()
        self._last_message_at = now

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Loop until `self.stop` is set (SIGTERM in the command sets it)."""
        self._until_done(do_register_this_node)
        failures = 0
        while not self.stop.is_set():
            try:
                close_old_connections()
                self.cycle()
                failures = 0
            except Exception:  # e.g. a status row while the database is locked: never die
                failures += 1
                log.exception("consumer: this cycle failed; going on")
                self.stop.wait(min(MAX_BACKOFF, 0.25 * 2**failures))
        try:
            self.reporter.report(WorkerState.STOPPED, "", None, time.monotonic())
        except Exception as exc:
            log.warning("consumer: could not record the stop: %r", exc)
        self.trace_responder.close()
        connection.close()  # this thread's connection: a thread's end does not close it

    def _until_done(self, work: Any) -> None:
        """Run `work` until it succeeds (or the worker stops), backing off on failures."""
        failures = 0
        while not self.stop.is_set():
            try:
                work()
                return
            except Exception:
                failures += 1
                log.exception("consumer: start-up step failed; retrying")
                close_old_connections()
                self.stop.wait(min(MAX_BACKOFF, 0.25 * 2**failures))

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="piaotong-consumer", daemon=True)
        thread.start()
        return thread


def _stream_seq(msg: Msg) -> int | None:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return None
