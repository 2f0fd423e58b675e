"""The outbox relay (发件中继): outbox rows -> JetStream, each with its event id as `Nats-Msg-Id`.

One cycle claims a batch of unpublished rows in id order, publishes them concurrently, waits for
every PubAck and records `published_at` and the stream sequence. Rows whose publish failed keep
`published_at` empty, count an attempt and keep the error; they are retried in the next cycle.

Claiming: on PostgreSQL `FOR UPDATE SKIP LOCKED` inside the cycle's transaction, so several
relays share the work and a row is published by one of them at a time. On SQLite the batch is
read without holding the write lock (a publish can take seconds while NATS is slow, and SQLite
has one writer for the whole database): a second relay there could publish a row twice, which
the stream's duplicate window and the receivers' inbox absorb. There is never a "last id seen"
high-water mark: a lower id can commit after a higher one, and is found by the next cycle.

Wake-up: `NOTIFY piaotong_outbox` on PostgreSQL, `OUTBOX_SIGNAL` in the same process, and a poll
every `PIAOTONG_RELAY_POLL_SECONDS` (default 0.2, at most 1) in any case; after a cycle that
published something, the next poll comes after 50 ms (SQLite: the issuing process cannot signal
this one, and at 100 invoices/s the 0.2 s poll was most of the end-to-end lag). While NATS is down the
rows stay; the relay probes with the oldest row, backing off up to 5 s, records the attempt and
the error on that row, and reports `nats_down` with the time it started.

The database failing (SQLite's write lock held past the busy timeout, a lost PostgreSQL
connection) never ends the relay: the cycle is logged and retried with the same backoff. Rows
published whose marks could not be written are published again by the next cycle, under the
same message id (the stream's duplicate window drops them, the receivers' inbox would too).

The relay also announces this node to the hub, publishes the registry (on the hub) when it
changed, and sends a heartbeat with its backlog on core NATS every few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from piaotong.exchange.actions import NOTIFY_CHANNEL, OUTBOX_SIGNAL, message_for
from piaotong.exchange.choices import WorkerState
from piaotong.exchange.config import number, setting
from piaotong.exchange.messages import (
    HEARTBEAT_PREFIX,
    REGISTRY_ANNOUNCE_SUBJECT,
    REGISTRY_NODES_SUBJECT,
    SCHEMA_HEADER,
    VERSION_HEADER,
    WRITER_HEADER,
    dumps,
)
from piaotong.exchange.models import OutboxEvent, RegistryState, WorkerStatus
from piaotong.exchange.natslink import NatsLink, NatsUnavailable
from piaotong.exchange.nodes import (
    announcement,
    do_register_this_node,
    registry_message,
    this_node,
)
from piaotong.exchange.status import Reporter, outbox_backlog

log = logging.getLogger(__name__)
MAX_BACKOFF = 5.0
BUSY_POLL = 0.05  # after a cycle that published: look again soon, more is likely coming
# A node announces itself every minute (every 2 s for its first 30 s): the hub applies an
# unchanged announcement without effect, and re-learns a node it lost (restored from an older
# backup, or an announcement that never reached it) within a minute instead of never.
ANNOUNCE_EVERY = 60.0
ANNOUNCE_EARLY_EVERY, ANNOUNCE_EARLY_FOR = 2.0, 30.0
HEARTBEAT_EVERY = 5.0


def nats_url() -> str:
    return setting("PIAOTONG_NATS_URL")


def poll_seconds() -> float:
    return min(1.0, number("PIAOTONG_RELAY_POLL_SECONDS", 0.2))


def _headers(row: OutboxEvent) -> dict[str, str]:
    return {
        "Nats-Msg-Id": str(row.ledger_event.event_id),
        SCHEMA_HEADER: row.schema,
        VERSION_HEADER: str(row.schema_version),
        WRITER_HEADER: row.ledger_event.writer,
    }


def _unpublished(batch: int) -> Any:
    rows = OutboxEvent.objects.filter(published_at__isnull=True).order_by("id")
    if connection.vendor == "postgresql":
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    return rows.select_related("ledger_event")[:batch]


def _mark_sql() -> str:
    table = connection.ops.quote_name(OutboxEvent._meta.db_table)
    return (
        f"UPDATE {table} SET published_at = %s, stream_seq = %s, attempts = %s, "  # noqa: S608
        "last_error = %s WHERE id = %s"
    )


def _mark(done: list[OutboxEvent], failed: list[OutboxEvent]) -> None:
    """Record the outcome of each row in one transaction: one prepared UPDATE run per row
    (`executemany`; `bulk_update` compiled a CASE per row and column, which took most of a
    cycle's time at a few hundred rows)."""
    rows = done + failed
    if not rows:
        return
    field = OutboxEvent._meta.get_field("published_at")
    params = [
        (
            field.get_db_prep_save(row.published_at, connection),
            row.stream_seq,
            row.attempts,
            row.last_error,
            row.pk,
        )
        for row in rows
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_mark_sql(), params)


class Relay:
    """Publishes this node's outbox. Use `run()` in a worker process or `start()` in a thread."""

    def __init__(self, link: NatsLink, batch: int = 200) -> None:
        self.link, self.batch = link, batch
        self.reporter = Reporter("relay")
        self.failures = 0
        self.down_since: float | None = None
        self._announced_at = float("-inf")  # monotonic time starts near 0 at boot
        self._started_at, self._started_wall = time.monotonic(), int(time.time())
        self._announcements = 0
        self._heartbeat_at = float("-inf")
        self.stop = threading.Event()
        self._listen: Any = None

    # --- one cycle ------------------------------------------------------------------------

    def publish_batch(self) -> int:
        """Publish up to one batch; the number published. Raises NatsUnavailable when down."""
        if not self.link.connect():
            raise NatsUnavailable(self.link.last_error)
        self.link.ensure_stream(int(number("PIAOTONG_NATS_REPLICAS", 1)))
        if connection.vendor == "postgresql":
            with transaction.atomic():
                return self._publish(list(_unpublished(self.batch)))
        return self._publish(list(_unpublished(self.batch)))

    def _publish(self, rows: list[OutboxEvent]) -> int:
        if not rows:
            return 0
        results = self.link.publish_many(
            [(row.subject, dumps(message_for(row)), _headers(row)) for row in rows]
        )
        now, done, failed = timezone.now(), [], []
        for row, result in zip(rows, results, strict=True):
            row.attempts += 1
            if result.stream_seq is not None:
                row.published_at, row.stream_seq, row.last_error = now, result.stream_seq, ""
                done.append(row)
            else:
                row.last_error = result.error[:2000]
                failed.append(row)
        _mark(done, failed)
        if failed and not done:
            raise NatsUnavailable(failed[0].last_error)
        return len(done)

    def _record_probe_failure(self, error: str) -> None:
        """While NATS is down, the oldest row carries the attempt count and the error."""
        oldest = OutboxEvent.objects.filter(published_at__isnull=True).order_by("id").first()
        if oldest is not None:
            OutboxEvent.objects.filter(pk=oldest.pk).update(
                attempts=F("attempts") + 1, last_error=error[:2000]
            )

    # --- registry and heartbeat -----------------------------------------------------------

    def _announce(self, now: float) -> None:
        early = now - self._started_at < ANNOUNCE_EARLY_FOR
        if now - self._announced_at < (ANNOUNCE_EARLY_EVERY if early else ANNOUNCE_EVERY):
            return
        message = announcement()
        self._announcements += 1  # a new message id each time: the stream must store it
        msg_id = (
            f"announce:{message['body']['node_id']}:{message['key_id']}:"
            f"{self._started_wall}:{self._announcements}"
        )
        result = self.link.publish_many(
            [(REGISTRY_ANNOUNCE_SUBJECT, dumps(message), {"Nats-Msg-Id": msg_id})]
        )[0]
        if result.stream_seq is None:
            # Not stored: try again next cycle. Until the hub has this node's key, every event
            # of this node waits at the receivers (parked, awaiting the key).
            log.warning("relay: announcing this node failed (%s); retrying", result.error)
            return
        self._announced_at = now

    def _publish_registry(self) -> None:
        """Only the hub distributes the registry."""
        if not this_node().is_hub:
            return
        state = RegistryState.objects.filter(pk=1).first()
        if state is None or state.published_serial >= state.serial:
            return
        message = registry_message(state.serial)
        msg_id = f"registry:{settings.PIAOTONG_NODE_ID}:{state.serial}"
        result = self.link.publish_many(
            [(REGISTRY_NODES_SUBJECT, dumps(message), {"Nats-Msg-Id": msg_id})]
        )[0]
        if result.stream_seq is not None:
            RegistryState.objects.filter(pk=1).update(published_serial=state.serial)

    def _heartbeat(self, now: float, state: WorkerState) -> None:
        """Tell peers (core NATS) and the status row how big this node's backlog is."""
        if now - self._heartbeat_at < HEARTBEAT_EVERY:
            return
        self._heartbeat_at = now
        unpublished, oldest = outbox_backlog()
        detail = self.link.last_error if state != WorkerState.RUNNING else ""
        self.reporter.report(state, detail, unpublished, now, force=True)
        if not self.link.is_connected:
            return
        me = this_node()
        since = WorkerStatus.objects.filter(name="relay").values_list("since", flat=True).first()
        report = {
            "node_id": me.node_id,
            "region": me.region,
            "role": me.role,
            "unpublished": unpublished,
            "oldest_unpublished_at": oldest.isoformat() if oldest else None,
            "relay_state": state,
            "relay_since": since.isoformat() if since else None,
            "sent_at": timezone.now().isoformat(),
        }
        self.link.publish_core(f"{HEARTBEAT_PREFIX}.{me.node_id}", orjson.dumps(report))

    # --- the loop -------------------------------------------------------------------------

    def cycle(self) -> int:
        """One pass: registry duties, a batch, the heartbeat. Returns the number published."""
        now = time.monotonic()
        try:
            published = self.publish_batch()
            self._announce(now)
            self._publish_registry()
        except NatsUnavailable as exc:
            self.failures += 1
            if self.down_since is None:
                self.down_since = now
                log.warning("relay: NATS unavailable: %s", exc)
            self._record_probe_failure(str(exc))
            self.reporter.report(WorkerState.NATS_DOWN, str(exc), None, now)
            self._heartbeat(now, WorkerState.NATS_DOWN)
            return 0
        if self.down_since is not None:
            log.info("relay: NATS is back after %.1f s", now - self.down_since)
        self.failures, self.down_since = 0, None
        self.reporter.report(WorkerState.RUNNING, "", None, now)
        self._heartbeat(now, WorkerState.RUNNING)
        return published

    def wait(self, seconds: float) -> None:
        """Sleep until woken by a commit (NOTIFY or the in-process signal) or `seconds` pass."""
        if self._listen is not None:
            try:
                for _ in self._listen.notifies(timeout=seconds, stop_after=1):
                    pass
                return
            except Exception as exc:
                log.warning("relay: LISTEN connection lost (%s); polling", exc)
                self._listen = None
        OUTBOX_SIGNAL.wait(seconds)
        OUTBOX_SIGNAL.clear()

    def _start_listening(self) -> None:
        if connection.vendor != "postgresql":
            return
        import psycopg

        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params.pop("server_side_binding", None)
        params.pop("prepare_threshold", None)
        try:
            self._listen = psycopg.connect(**params, autocommit=True)
            self._listen.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except Exception as exc:
            log.warning("relay: cannot LISTEN (%s); polling", exc)
            self._listen = None

    def run(self, on_cycle: Callable[[int], None] | None = None) -> None:
        """Loop until `self.stop` is set (SIGTERM in the command sets it)."""
        self._start_listening()
        registered = False
        while not self.stop.is_set():
            try:
                close_old_connections()
                if not registered:
                    do_register_this_node()
                    registered = True
                published = self.cycle()
            except Exception as exc:  # the database (locked, connection lost): never die
                self.failures += 1
                log.exception("relay: this cycle failed (%r); retrying", exc)
                self._report_quietly(WorkerState.RUNNING, f"database: {exc!r}")
                self.stop.wait(min(MAX_BACKOFF, 0.25 * 2**self.failures))
                continue
            if on_cycle:
                on_cycle(published)
            if published >= self.batch:
                continue  # more is waiting
            if self.failures:
                self.stop.wait(min(MAX_BACKOFF, 0.25 * 2**self.failures))
            elif published:  # traffic is flowing (issued in another process: no signal)
                self.wait(min(BUSY_POLL, poll_seconds()))
            else:
                self.wait(poll_seconds())
        self._report_quietly(WorkerState.STOPPED, "")
        if self._listen is not None:
            self._listen.close()
        connection.close()  # this thread's connection: a thread's end does not close it

    def _report_quietly(self, state: WorkerState, detail: str) -> None:
        try:
            self.reporter.report(state, detail, None, time.monotonic())
        except Exception as exc:  # the database is what failed
            log.warning("relay: could not record its state: %r", exc)

    def start(self) -> threading.Thread:
        """Run in a daemon thread of this process (single-node `serve`, tests)."""
        thread = threading.Thread(target=self.run, name="piaotong-relay", daemon=True)
        thread.start()
        return thread
