"""Reconciliation over NATS (对账通道): the responder in each node's consumer process, the
requesting side, and the scheduled loop.

Requests and answers are JSON on core NATS request/reply (not stored in the stream), subject
`piaotong.reconcile.<node id>`. The responder runs database work in one thread of its own, so
the consumer's NATS loop is never blocked by a digest over a million invoices.

The same process answers recovery requests of a restored node (`piaotong.recover.<node id>`,
`recovery_source`; only the hub is asked) and, on a node restored from a backup, runs its own
recovery from the hub until it completes (`recovery.RecoveryLoop`).

Schedule (settings or environment, see `exchange.config`):
- `PIAOTONG_RECONCILE_EVERY_SECONDS` (300): recent days, `PIAOTONG_RECONCILE_RECENT_DAYS` (2,
  today included), with every peer; 0 turns the loop off;
- `PIAOTONG_RECONCILE_NIGHTLY_HOUR` (3, Asia/Shanghai): once a night, the
  `PIAOTONG_RECONCILE_NIGHTLY_DAYS` (400) days before the recent ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from functools import partial
from typing import Any

import orjson
from django.db import close_old_connections
from django.utils import timezone
from nats.aio.msg import Msg

from piaotong.exchange import reconcile, recovery, recovery_source
from piaotong.exchange.config import number
from piaotong.exchange.consumer import durable_name
from piaotong.exchange.models import ReconciliationRun
from piaotong.exchange.natslink import NatsLink, NatsUnavailable
from piaotong.exchange.nodes import this_node

log = logging.getLogger(__name__)
SUBJECT_PREFIX = "piaotong.reconcile"
REQUEST_TIMEOUT = 120.0


def subject_of(node_id: str) -> str:
    """
    >>> subject_of("node-31")
    'piaotong.reconcile.node-31'
    """
    return f"{SUBJECT_PREFIX}.{node_id}"


def handle_request(data: bytes) -> bytes:
    """One request in, one answer out; errors are answered, never raised into NATS."""
    close_old_connections()
    try:
        return orjson.dumps(reconcile.answer(orjson.loads(data)))
    except Exception as exc:
        log.exception("reconcile: could not answer a request")
        return orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})


class Responder:
    """Answers peers' reconciliation requests on `piaotong.reconcile.<this node>`."""

    def __init__(self, link: NatsLink) -> None:
        self.link = link
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="piaotong-reconcile")
        self.subscribed = False

    async def _on_request(self, msg: Msg) -> None:
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(self.executor, handle_request, msg.data)
        await msg.respond(reply)

    def try_subscribe(self) -> bool:
        """Subscribe once the link is connected (nats-py renews it after reconnects)."""
        if not self.subscribed and self.link.is_connected:
            self.link.subscribe_core(subject_of(this_node().node_id), self._on_request)
            self.subscribed = True
        return self.subscribed


def handle_recovery_request(data: bytes, position: recovery_source.Position) -> bytes:
    """One recovery request in, one answer out; errors are answered, never raised into NATS."""
    close_old_connections()
    try:
        return orjson.dumps(recovery_source.answer(orjson.loads(data), position))
    except Exception as exc:
        log.exception("recovery: could not answer a request")
        return orjson.dumps({"error": f"{type(exc).__name__}: {exc}"})


class RecoveryResponder:
    """Answers restored nodes' recovery requests on `piaotong.recover.<this node>`."""

    def __init__(self, link: NatsLink) -> None:
        self.link = link
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="piaotong-recovery-source")
        self.subscribed = False

    def position(self) -> tuple[int, int]:
        """(stream sequence acknowledged through, messages pending) of this node's consumer."""
        info = self.link.consumer_info(durable_name(this_node()))
        pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return int(info.ack_floor.stream_seq if info.ack_floor else 0), pending

    async def _on_request(self, msg: Msg) -> None:
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(
            self.executor, handle_recovery_request, msg.data, self.position
        )
        await msg.respond(reply)

    def try_subscribe(self) -> bool:
        if not self.subscribed and self.link.is_connected:
            self.link.subscribe_core(recovery.subject_of(this_node().node_id), self._on_request)
            self.subscribed = True
        return self.subscribed


def nats_peer(link: NatsLink, node_id: str, timeout: float = REQUEST_TIMEOUT) -> reconcile.Peer:
    """A `Peer` that asks `node_id`'s responder over NATS."""

    def ask(request: dict[str, Any]) -> dict[str, Any]:
        if not link.connect():
            raise NatsUnavailable(link.last_error)
        try:
            data = link.request(subject_of(node_id), orjson.dumps(request), timeout)
        except Exception as exc:
            raise reconcile.PeerError(
                f"{node_id} did not answer {request.get('op')}: {exc!r}"
            ) from exc
        answer: dict[str, Any] = orjson.loads(data)
        return answer

    return ask


def reconcile_all(
    link: NatsLink,
    scope_for: Any,
    trigger: str,
    peer_id: str = "",
) -> list[ReconciliationRun]:
    """One run with every peer (or `peer_id`); `scope_for(region)` gives each run's scope."""
    runs = []
    for node_id, region in reconcile.peers_of(this_node()):
        if peer_id and node_id != peer_id:
            continue
        runs.append(reconcile.run(node_id, nats_peer(link, node_id), scope_for(region), trigger))
    return runs


def reconcile_after_recovery(link: NatsLink, since: date) -> list[ReconciliationRun]:
    """A reconciliation with the hub over the issue dates since the backup (at most the nightly
    window): it brings back other nodes' facts about invoices of those days that recovery's
    time window missed, and proves the digests equal."""
    today = timezone.localdate()
    days = int(number("PIAOTONG_RECONCILE_NIGHTLY_DAYS", 400))
    start = max(since, today - timedelta(days=days - 1))
    return reconcile_all(
        link,
        lambda region: reconcile.Scope(start, today, region),
        ReconciliationRun.Trigger.MANUAL,
    )


class ReconcileLoop:
    """Scheduled runs in the consumer process: recent days often, older days nightly."""

    def __init__(self, link: NatsLink, stop: threading.Event) -> None:
        self.link, self.stop = link, stop
        self.every = number("PIAOTONG_RECONCILE_EVERY_SECONDS", 300)
        self.recent_days = int(number("PIAOTONG_RECONCILE_RECENT_DAYS", 2))
        self.nightly_hour = int(number("PIAOTONG_RECONCILE_NIGHTLY_HOUR", 3))
        self.nightly_days = int(number("PIAOTONG_RECONCILE_NIGHTLY_DAYS", 400))
        self.responder = Responder(link)
        self.recovery_responder = RecoveryResponder(link)
        self._night_done: date | None = None

    def _recent(self, region: str) -> reconcile.Scope:
        return reconcile.recent_scope(self.recent_days, region)

    def _older(self, region: str) -> reconcile.Scope:
        end = timezone.localdate() - timedelta(days=self.recent_days)
        return reconcile.Scope(end - timedelta(days=self.nightly_days - 1), end, region)

    def tick(self) -> None:
        close_old_connections()
        if not self.link.is_connected:
            return
        reconcile_all(self.link, self._recent, ReconciliationRun.Trigger.SCHEDULED_RECENT)
        now = timezone.localtime()
        if now.hour == self.nightly_hour and self._night_done != now.date():
            reconcile_all(self.link, self._older, ReconciliationRun.Trigger.SCHEDULED_NIGHTLY)
            self._night_done = now.date()

    def run(self) -> None:
        next_run = time.monotonic() + min(self.every, 30.0)  # let the consumer catch up first
        while not self.stop.is_set():
            try:
                self.responder.try_subscribe()
                self.recovery_responder.try_subscribe()
                if self.every > 0 and time.monotonic() >= next_run:
                    next_run = time.monotonic() + self.every
                    self.tick()
            except Exception:
                log.exception("reconcile loop: this round failed; the next one comes")
            self.stop.wait(1.0)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="piaotong-reconcile-loop", daemon=True)
        thread.start()
        return thread


def start_in_worker(link: NatsLink, stop: threading.Event) -> ReconcileLoop:
    """The hook for the consumer command: the responders and the schedule, in a thread; and
    on a node restored from a backup, its recovery from the hub, in another."""
    loop = ReconcileLoop(link, stop)
    loop.start()
    recovery.RecoveryLoop(link, stop, after=partial(reconcile_after_recovery, link)).start()
    return loop
