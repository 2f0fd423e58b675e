"""Trace requests between nodes over a real nats-server: the consumer process answers."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from piaotong.accounts.access import actor_for_user
from piaotong.exchange import trace_remote
from piaotong.exchange.consumer import Consumer
from piaotong.exchange.natslink import NatsLink
from piaotong.exchange.trace_remote import ask_nodes
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.testing import draft


@pytest.fixture
def responder(nats_url: str) -> Any:
    """node-11's consumer, subscribed: it answers on piaotong.trace.node-11."""
    link = NatsLink(nats_url, "test-consumer")
    consumer = Consumer(link, fetch_timeout=0.3)
    assert consumer.subscribe()
    yield consumer
    consumer.trace_responder.close()
    link.close()


@pytest.mark.django_db(transaction=True)  # the answering thread reads committed rows only
def test_a_node_answers_whether_it_has_an_invoice(
    clerk: Any, org_a: Any, org_b: Any, responder: Consumer, settings: Any
) -> None:
    settings.PIAOTONG_TRACE_TIMEOUT_SECONDS = 0.5
    invoice = do_issue_new_invoice(actor_for_user(clerk), org_a, draft(org_b))
    started = time.monotonic()
    held, unknown, silent = ask_nodes(
        [
            ("node-11", orjson.dumps({"number": invoice.number})),
            ("node-11", orjson.dumps({"number": "26112000000000009999"})),
            ("node-44", orjson.dumps({"number": invoice.number})),  # nobody answers for it
        ]
    )
    assert time.monotonic() - started < 1.5
    assert held is not None and unknown is not None and silent is None
    answer = orjson.loads(held)
    assert (answer["has_invoice"], answer["status"], answer["buyer_region"]) == (
        True,
        "issued",
        "31",
    )
    assert answer["published_at"] is None and answer["buyer_tax_id"] == org_b.tax_id
    assert orjson.loads(unknown)["has_invoice"] is False


class _CountingLink:
    """Stands in for the NATS link: records who was asked; `silent` nodes never answer."""

    def __init__(self, silent: set[str]) -> None:
        self.silent, self.is_connected = silent, True
        self.asked: list[list[str]] = []

    def request_many(self, requests: list[tuple[str, bytes]], timeout: float) -> list[Any]:
        nodes = [subject.rsplit(".", 1)[1] for subject, _ in requests]
        self.asked.append(nodes)
        return [None if node in self.silent else b"{}" for node in nodes]


def test_a_node_that_did_not_answer_is_not_waited_for_again_at_once(monkeypatch: Any) -> None:
    link = _CountingLink(silent={"node-11"})
    monkeypatch.setattr(trace_remote, "shared_link", lambda: link)
    ask = [("hub", b"q"), ("node-11", b"q")]
    assert trace_remote.ask_nodes(ask) == [b"{}", None]
    assert trace_remote.ask_nodes(ask) == [b"{}", None]  # the same answer, without waiting
    assert link.asked == [["hub", "node-11"], ["hub"]]
    link.is_connected = False  # NATS itself unreachable: nobody is asked for a while
    link.silent = {"hub", "node-11"}
    trace_remote._SILENT.clear()
    assert trace_remote.ask_nodes(ask) == [None, None]
    assert trace_remote.ask_nodes(ask) == [None, None] and len(link.asked) == 3
