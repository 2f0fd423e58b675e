"""Trace requests between nodes over a real nats-server: the consumer process answers."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from piaotong.accounts.access import actor_for_user
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
