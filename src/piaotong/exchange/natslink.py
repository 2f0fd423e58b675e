"""A synchronous face over nats-py: one asyncio loop in a background thread per process.

The relay and the consumer do their database work in the calling thread (the Django ORM is
synchronous, and tests wrap it in a transaction), and hand the NATS work to the loop thread with
`run_coroutine_threadsafe`. The link connects lazily, reconnects forever, and says whether it is
connected, so a caller can tell "NATS is down" from "this message is bad".

Terms: the stream (消息流) is the JetStream stream `PIAOTONG` holding `piaotong.v1.>`; a durable
consumer (持久消费者) is one node's position in it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAM = "PIAOTONG"
STREAM_SUBJECTS = ["piaotong.v1.>"]
DUPLICATE_WINDOW_SECONDS = 120.0
MAX_AGE_SECONDS = 10 * 365 * 24 * 3600.0  # "long MaxAge": the hub and reconciliation rebuild


class NatsUnavailable(RuntimeError):
    """NATS did not answer (not connected, timed out): retry later, nothing is wrong with data."""


@dataclass(frozen=True)
class Published:
    """The outcome of publishing one message: the stream sequence, or the error."""

    stream_seq: int | None
    duplicate: bool = False
    error: str = ""


def stream_config(replicas: int = 1) -> api.StreamConfig:
    """The production stream config (ARCHITECTURE §6) as far as the server allows.

    File storage, no deletes or purges through the API, a long MaxAge with DiscardNew (a full
    stream refuses new messages, it does not drop old ones: the relay keeps them and alerts), and
    the duplicate window for `Nats-Msg-Id`. `sync_interval: always` is server configuration (see
    `cluster.nats_config`). `replicas` is 3 on a production cluster, 1 on a single server.
    """
    return api.StreamConfig(
        name=STREAM,
        description="Piaotong ledger events between nodes",
        subjects=STREAM_SUBJECTS,
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.NEW,
        max_age=MAX_AGE_SECONDS,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
        deny_delete=True,
        deny_purge=True,
    )


class NatsLink:
    """A connection to NATS with a JetStream context, driven from synchronous code."""

    def __init__(self, url: str, name: str, timeout: float = 5.0) -> None:
        self.url, self.name, self.timeout = url, name, timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"nats-{name}")
        self._thread.daemon = True
        self._thread.start()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self.last_error = ""
        self._stream_ready = False

    # --- plumbing -------------------------------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the loop thread and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=(timeout or self.timeout) + 1.0)
        except TimeoutError:
            future.cancel()
            raise NatsUnavailable("NATS did not answer in time") from None

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def connect(self) -> bool:
        """Connect if not connected; False (with `last_error`) when the server is unreachable."""
        if self.is_connected:
            return True
        if self._nc is not None and not self._nc.is_closed:
            return False  # the client is reconnecting by itself
        try:
            self.call(self._connect(), timeout=self.timeout)
        except Exception as exc:
            self.last_error = f"cannot connect to {self.url}: {exc}"
            return False
        return True

    async def _connect(self) -> None:
        async def disconnected() -> None:
            log.warning("nats %s: disconnected", self.name)

        async def reconnected() -> None:
            log.info("nats %s: reconnected", self.name)

        async def error(exc: Exception) -> None:
            self.last_error = str(exc) or type(exc).__name__

        self._nc = await nats.connect(
            self.url,
            # The first connection gives up at once (the caller retries with backoff); once
            # connected, the client reconnects forever (set below).
            allow_reconnect=False,
            name=self.name,
            connect_timeout=2,
            reconnect_time_wait=0.5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        self._nc.options["allow_reconnect"] = True
        self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream(timeout=self.timeout)

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise NatsUnavailable("not connected to NATS")
        return self._js

    def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                self.call(self._nc.close(), timeout=2)
            except Exception as exc:
                log.debug("closing nats link: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)

    # --- stream ---------------------------------------------------------------------------

    def ensure_stream(self, replicas: int = 1) -> None:
        """Create the stream, or bring an existing one to our config; idempotent."""
        if self._stream_ready:
            return
        self.call(self._ensure_stream(stream_config(replicas)))
        self._stream_ready = True

    async def _ensure_stream(self, config: api.StreamConfig) -> None:
        try:
            await self.js.stream_info(STREAM)
        except NotFoundError:
            await self.js.add_stream(config)
            return
        try:
            await self.js.update_stream(config)
        except BadRequestError as exc:  # e.g. replicas cannot change on this server
            log.warning("stream %s kept its config: %s", STREAM, exc)

    # --- publishing -----------------------------------------------------------------------

    def publish_many(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]]
    ) -> list[Published]:
        """Publish (subject, data, headers) messages concurrently and wait for every PubAck."""
        if not self.is_connected:
            raise NatsUnavailable(self.last_error or "not connected to NATS")
        return self.call(self._publish_many(messages), timeout=self.timeout)

    async def _publish_many(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]]
    ) -> list[Published]:
        acks = await asyncio.gather(
            *(
                self.js.publish(subject, data, headers=headers, timeout=self.timeout)
                for subject, data, headers in messages
            ),
            return_exceptions=True,
        )
        return [
            Published(None, error=f"{type(ack).__name__}: {ack}")
            if isinstance(ack, BaseException)
            else Published(ack.seq, bool(ack.duplicate))
            for ack in acks
        ]

    def publish_core(self, subject: str, data: bytes) -> None:
        """Fire-and-forget on core NATS (heartbeats): lost when nobody listens, by design."""
        if self._nc is not None and self.is_connected:
            self.call(self._nc.publish(subject, data))

    def subscribe_core(self, subject: str, handler: Callable[[Msg], Awaitable[None]]) -> None:
        assert self._nc is not None
        self.call(self._nc.subscribe(subject, cb=handler))

    def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """Core NATS request/reply: the answer's bytes. NatsUnavailable when not connected;
        nats-py's errors (no responders, timeout) as raised."""
        if not self.connect():
            raise NatsUnavailable(self.last_error or "not connected to NATS")
        return self.call(self.request_async(subject, data, timeout), timeout=timeout)

    async def request_async(self, subject: str, data: bytes, timeout: float) -> bytes:
        """`request` on the loop thread (to send several at once with `asyncio.gather`)."""
        if self._nc is None:
            raise NatsUnavailable("not connected to NATS")
        msg = await self._nc.request(subject, data, timeout=timeout)
        return msg.data

    # --- consuming ------------------------------------------------------------------------

    def ensure_consumer(self, durable: str, filters: list[str]) -> api.ConsumerInfo:
        config = api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=30,
            max_ack_pending=10_000,
            filter_subjects=filters if len(filters) > 1 else None,
            filter_subject=filters[0] if len(filters) == 1 else None,
        )
        return self.call(self.js.add_consumer(STREAM, config))

    def pull_subscription(self, durable: str) -> JetStreamContext.PullSubscription:
        return self.call(self.js.pull_subscribe_bind(durable=durable, stream=STREAM))

    def fetch(
        self,
        subscription: JetStreamContext.PullSubscription,
        batch: int,
        timeout: float,
        linger: float = 0.0,
    ) -> list[Msg]:
        """Up to `batch` messages: waits at most `timeout` for the first one, then takes what
        else is there within `linger` seconds and returns at once.

        (nats-py's `fetch(n)` with a waiting pull keeps collecting until n arrived or the whole
        timeout passed: at a low rate the first message would wait up to `timeout`.)
        """
        return self.call(self._fetch(subscription, batch, timeout, linger), timeout=timeout + 1)

    async def _fetch(
        self,
        subscription: JetStreamContext.PullSubscription,
        batch: int,
        timeout: float,
        linger: float,
    ) -> list[Msg]:
        try:
            first = await subscription.fetch(1, timeout=timeout)
        except nats.errors.TimeoutError:
            return []
        if batch <= 1:
            return first
        try:  # a no-wait pull first: what is already there comes back without waiting
            more = await subscription.fetch(batch - 1, timeout=max(linger, 0.001))
        except nats.errors.TimeoutError:
            more = []
        return first + more

    def unsubscribe(self, subscription: JetStreamContext.PullSubscription) -> None:
        try:
            self.call(subscription.unsubscribe(), timeout=2)
        except Exception as exc:
            log.debug("unsubscribe: %s", exc)

    def ack(self, msg: Msg) -> None:
        self.call(msg.ack())

    def nak(self, msg: Msg, delay: float | None = None) -> None:
        self.call(msg.nak(delay=delay))

    def ack_many(self, messages: Sequence[Msg]) -> None:
        """Acknowledge several messages in one hop to the loop thread."""
        if messages:
            self.call(_each(msg.ack() for msg in messages))

    def nak_many(self, messages: Sequence[Msg], delay: float | None = None) -> None:
        if messages:
            self.call(_each(msg.nak(delay=delay) for msg in messages))

    def in_progress_many(self, messages: Sequence[Msg]) -> None:
        """Tell the server these messages are still being worked on (restarts `ack_wait`)."""
        if messages:
            self.call(_each(msg.in_progress() for msg in messages))

    def consumer_info(self, durable: str) -> api.ConsumerInfo:
        info: api.ConsumerInfo = self.call(self.js.consumer_info(STREAM, durable))
        return info

    def stream_info(self) -> api.StreamInfo:
        return self.call(self.js.stream_info(STREAM))


async def _each(coroutines: Any) -> None:
    """Await coroutines in order (acks are publishes: cheap, ordered on one connection)."""
    for coroutine in coroutines:
        await coroutine
