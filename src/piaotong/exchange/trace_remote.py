"""Asking other nodes about an invoice, and answering them: NATS request/reply (core NATS).

Each node's consumer process answers on `piaotong.trace.<node id>` ("do you have invoice N":
`trace_facts.describe_invoice`), in a small thread pool so the database work never blocks the
NATS loop. A tracing node asks the invoice's home node and the hub at once and waits at most
`PIAOTONG_TRACE_TIMEOUT_SECONDS` (default 0.5 s); a node that does not answer is reported as
such in the trace, never waited for longer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
from django.db import close_old_connections
from nats.aio.msg import Msg

from piaotong.exchange.config import number, setting
from piaotong.exchange.natslink import NatsLink

log = logging.getLogger(__name__)
TRACE_PREFIX = "piaotong.trace"


def trace_subject(node_id: str) -> str:
    """
    >>> trace_subject("node-31")
    'piaotong.trace.node-31'
    """
    return f"{TRACE_PREFIX}.{node_id}"


def answer_bytes(data: bytes) -> bytes:
    """The answer to one request (runs in a pool thread with its own connection)."""
    from piaotong.exchange.trace_facts import describe_invoice

    close_old_connections()
    try:
        asked = orjson.loads(data)
        return orjson.dumps(describe_invoice(str(asked["number"])[:20]))
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return orjson.dumps({"error": f"bad request: {exc}"})
    finally:
        close_old_connections()


class TraceResponder:
    """Answers trace requests for this node; `on_request` is the core-NATS handler."""

    def __init__(self, node_id: str) -> None:
        self.subject = trace_subject(node_id)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trace-answer")

    async def on_request(self, msg: Msg) -> None:
        try:
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(self.pool, answer_bytes, msg.data)
            await msg.respond(answer)
        except Exception:
            log.exception("trace: could not answer a request on %s", msg.subject)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class TraceLink(NatsLink):
    """A NatsLink that can send several requests at once and wait for their replies."""

    def request_many(self, requests: list[tuple[str, bytes]], timeout: float) -> list[bytes | None]:
        if not self.connect():
            return [None] * len(requests)
        try:
            return self.call(self._request_many(requests, timeout), timeout=timeout)
        except Exception as exc:
            log.warning("trace: requests failed: %s", exc)
            return [None] * len(requests)

    async def _request_many(
        self, requests: list[tuple[str, bytes]], timeout: float
    ) -> list[bytes | None]:
        replies = await asyncio.gather(
            *(self.request_async(subject, data, timeout) for subject, data in requests),
            return_exceptions=True,
        )
        return [None if isinstance(r, BaseException) else r for r in replies]


_LINK: TraceLink | None = None
_LINK_LOCK = threading.Lock()


def shared_link() -> TraceLink | None:
    """The process's link for asking (web processes, the CLI), or None without NATS."""
    global _LINK
    url = setting("PIAOTONG_NATS_URL")
    if not url:
        return None
    with _LINK_LOCK:
        if _LINK is None or _LINK.url != url:
            if _LINK is not None:
                _LINK.close()
            _LINK = TraceLink(url, "piaotong-trace", timeout=2.0)
        return _LINK


# Nodes that did not answer in time, and NATS itself ("*") when it could not be reached: not
# asked again until the time given (monotonic). A bulk verification of many unknown numbers, or
# a public page under load, would otherwise wait the timeout once per number while a peer or
# NATS is down; the answer is the same ("did not answer": the search is incomplete).
_SILENT: dict[str, float] = {}
ANY = "*"


def ask_nodes(requests: list[tuple[str, bytes]]) -> list[bytes | None]:
    """Ask each (node id, request) pair; None for a node that did not answer in time, or that
    did not answer a moment ago (`PIAOTONG_TRACE_SILENT_SECONDS`, 30)."""
    link = shared_link()
    if link is None:
        return [None] * len(requests)
    now = time.monotonic()
    if _SILENT.get(ANY, 0.0) > now:
        return [None] * len(requests)
    asked = [i for i, (node, _) in enumerate(requests) if _SILENT.get(node, 0.0) <= now]
    replies: list[bytes | None] = [None] * len(requests)
    if not asked:
        return replies
    timeout = number("PIAOTONG_TRACE_TIMEOUT_SECONDS", 0.5)
    got = link.request_many(
        [(trace_subject(requests[i][0]), requests[i][1]) for i in asked], timeout
    )
    quiet_until = time.monotonic() + number("PIAOTONG_TRACE_SILENT_SECONDS", 30.0)
    if not link.is_connected:
        _SILENT[ANY] = quiet_until
    for i, reply in zip(asked, got, strict=True):
        replies[i] = reply
        if reply is None:
            _SILENT[requests[i][0]] = quiet_until
        else:
            _SILENT.pop(requests[i][0], None)
    return replies
