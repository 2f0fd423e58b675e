"""Reconciliation (对账): digests, drill-down, repairs through the inbox, the recorded run.

The peer here answers from a snapshot: the same database, in a savepoint where it held more (or
less), its entries computed by the real `local_entries` and its events by `event_messages`,
then rolled back. The last test asks a real responder over a real nats-server.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from piaotong.exchange import reconcile
from piaotong.exchange.inbox import Outcome
from piaotong.exchange.models import InboxEvent, QuarantinedEvent, ReconciliationRun
from piaotong.exchange.natslink import NatsLink
from piaotong.exchange.reconcile_digest import (
    Entry,
    bucket_digests,
    cell_digests,
    diff_entries,
    leaf_hash,
    merkle_root,
    parse_head,
)
from piaotong.exchange.reconcile_responder import Responder, nats_peer
from piaotong.exchange.tests.conftest import (
    Sent,
    as_node,
    event_message,
    issue_many_elsewhere,
    register,
)
from piaotong.invoices.models import Invoice, InvoiceLine
from piaotong.ledger.models import LedgerEvent
from piaotong.testing import draft

# --- pure -----------------------------------------------------------------------------------


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 as written: split at the largest power of two below n."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 100])
def test_it_computes_the_rfc6962_tree_hash(n: int) -> None:
    leaves = [leaf_hash(str(i)) for i in range(n)]
    assert merkle_root(leaves) == _mth(leaves)


def _entry(number: str, head: str = "node-11:1", day: str = "2026-11-28") -> Entry:
    return Entry(number[2:4], day, number, f"uid-{number}", "h", "issued", "", head)


def test_it_changes_only_the_bucket_and_cell_of_a_changed_entry() -> None:
    entries = [_entry(f"261120000000000{i:05d}") for i in range(300)]
    entries.append(_entry("26112000000000099999", day="2026-11-27"))
    before = cell_digests(entries)
    changed = [*entries[:-1], _entry("26112000000000099999", "node-11:2", "2026-11-27")]
    after = cell_digests(changed)
    assert bucket_digests(before)["11:2026-11-28"] == bucket_digests(after)["11:2026-11-28"]
    assert bucket_digests(before)["11:2026-11-27"] != bucket_digests(after)["11:2026-11-27"]
    assert before["11:2026-11-27"]["99"] != after["11:2026-11-27"]["99"]


def test_it_tells_missing_from_stale_on_each_side() -> None:
    here = [_entry("26112000000000000001"), _entry("26112000000000000002", "node-11:2")]
    there = [
        _entry("26112000000000000002", "node-11:1"),
        _entry("26112000000000000003"),
    ]
    kinds = {d.number[-1]: d.kind for d in diff_entries(here, there)}
    assert kinds == {"1": "missing_at_peer", "2": "stale_at_peer", "3": "missing_here"}


# --- against a snapshot peer ----------------------------------------------------------------


class SnapshotPeer:
    """A peer whose holdings were computed in a rolled-back savepoint."""

    def __init__(self, entries: list[Entry], messages: dict[str, list[list[Any]]]) -> None:
        self.entries, self.messages = entries, messages
        self.pushed: list[list[Any]] = []
        self.requests: list[str] = []

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request["op"])
        if request["op"] == "events":
            return {"messages": [m for s in request["streams"] for m in self.messages.get(s, [])]}
        if request["op"] == "apply":
            self.pushed += request["messages"]
            return {"outcomes": {"applied": len(request["messages"])}}
        return reconcile.answer(
            request, lambda scope: [e for e in self.entries if reconcile.in_scope(e, scope)]
        )


def _scope() -> reconcile.Scope:
    today = timezone.localdate()
    return reconcile.Scope(today - timedelta(days=1), today, "31")


def _snapshot(sent: list[Sent], tamper: bool = False) -> SnapshotPeer:
    """The peer holds every message of `sent` (applied here in a savepoint, then undone)."""
    with as_node("node-31", "31"), transaction.atomic():
        for message in sent:
            assert message.deliver() == Outcome.APPLIED
        entries = reconcile.local_entries(_scope())
        streams = [f"invoice:{e.uid}" for e in entries]
        messages: dict[str, list[list[Any]]] = {s: [] for s in streams}
        for subject, message in reconcile.event_messages(streams):
            if tamper:
                message["event"]["payload"]["invoice"]["remarks"] = "changed on the way"
            messages[message["event"]["stream"]].append([subject, message])
        transaction.set_rollback(True)
    return SnapshotPeer(entries, messages)


@pytest.fixture
def four(clerk: Any, org_a: Any, org_b: Any) -> list[Sent]:
    register("node-11", "11")
    register("hub", "00", "hub")
    return issue_many_elsewhere(clerk, org_a, [draft(org_b) for _ in range(4)])


def _run(peer: reconcile.Peer) -> ReconciliationRun:
    with as_node("node-31", "31"):
        return reconcile.run("hub", peer, _scope())


def test_it_finds_nothing_to_do_when_both_hold_the_same(four: list[Sent]) -> None:
    peer = _snapshot(four)
    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
    run = _run(peer)
    assert run.outcome == ReconciliationRun.Outcome.EQUAL
    assert (run.invoices_here, run.buckets_compared, run.buckets_differing) == (4, 1, 0)
    assert peer.requests == ["digests"]  # equal buckets: nothing drilled down


def test_it_fetches_missing_invoices_through_the_inbox(four: list[Sent]) -> None:
    peer = _snapshot(four)
    with as_node("node-31", "31"):
        four[0].deliver()
        four[2].deliver()
    run = _run(peer)
    assert (run.missing_here, run.repaired_here, run.unrepaired) == (2, 2, 0)
    assert run.outcome == ReconciliationRun.Outcome.REPAIRED
    assert run.cells_differing <= 2
    assert Invoice.objects.count() == 4
    assert InboxEvent.objects.count() == 4  # applied by the consumer's path, with inbox rows
    assert _run(peer).outcome == ReconciliationRun.Outcome.EQUAL


def test_it_repairs_an_invoice_row_deleted_by_hand(four: list[Sent]) -> None:
    peer = _snapshot(four)
    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
    victim = Invoice.objects.order_by("number")[1]
    number, signature = victim.number, victim.signature
    InvoiceLine.objects.filter(invoice=victim).delete()
    victim.delete()
    run = _run(peer)
    assert (run.missing_here, run.repaired_here, run.unrepaired) == (1, 1, 0)
    restored = Invoice.objects.get(number=number)
    assert restored.signature == signature and restored.lines.count() == 1
    assert LedgerEvent.objects.filter(stream=restored.stream).count() == 1  # nothing appended


def test_it_pushes_what_the_peer_lacks_and_checks_it_arrived(four: list[Sent]) -> None:
    peer = _snapshot(four[:1])
    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
    run = _run(peer)
    assert run.missing_at_peer == 3
    assert len({m[1]["event"]["stream"] for m in peer.pushed}) == 3
    # This peer only records what it was sent: the second comparison sees it still lacking.
    assert (run.repaired_at_peer, run.unrepaired) == (0, 3)
    assert run.outcome == ReconciliationRun.Outcome.UNREPAIRED


def test_it_quarantines_a_tampered_event_instead_of_repairing(four: list[Sent]) -> None:
    peer = _snapshot(four, tamper=True)
    with as_node("node-31", "31"):
        for message in four[:3]:
            message.deliver()
    run = _run(peer)
    assert (run.missing_here, run.repaired_here, run.unrepaired) == (1, 0, 1)
    assert QuarantinedEvent.objects.get().reason == "bad_hash"
    assert Invoice.objects.count() == 3


def test_it_fetches_a_later_event_of_an_invoice_held_here(
    four: list[Sent], noted_kind: str
) -> None:
    first = orjson.loads(four[1].data)["event"]
    later, _ = event_message(
        first["stream"], "node-11", 2, noted_kind, {"text": "n"}, first["hash"]
    )
    peer = _snapshot([*four, later])
    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
    run = _run(peer)
    assert (run.stale_here, run.repaired_here, run.unrepaired) == (1, 1, 0)
    assert LedgerEvent.objects.filter(stream=first["stream"], writer="node-11").count() == 2
    assert _run(peer).outcome == ReconciliationRun.Outcome.EQUAL


def test_it_streams_the_digests_it_would_compute_from_the_entries(four: list[Sent]) -> None:
    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
    today = timezone.localdate()
    for days, invoice in enumerate(Invoice.objects.order_by("number")[:3]):
        Invoice.objects.filter(pk=invoice.pk).update(issue_date=today - timedelta(days=days))
    scope = reconcile.Scope(today - timedelta(days=5), today, "31")
    entries = reconcile.local_entries(scope)
    assert [e.issue_date for e in entries] == sorted(e.issue_date for e in entries)
    assert len({e.issue_date for e in entries}) == 3
    assert reconcile.local_cells(scope) == cell_digests(entries)


def test_it_holds_in_a_region_what_its_sellers_sold_or_its_buyers_bought(
    four: list[Sent],
) -> None:
    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
    today = timezone.localdate()
    counts = {
        region: len(reconcile.local_entries(reconcile.Scope(today, today, region)))
        for region in ("11", "31", "44", "")
    }
    assert counts == {"11": 4, "31": 4, "44": 0, "": 4}


def test_it_keeps_local_only_events_out_of_the_stream_head(four: list[Sent]) -> None:
    """Heads count every event of an invoice stream (read from the index alone); that holds
    only while local facts such as a rendered document live on streams of their own."""
    from piaotong.documents.actions import do_render_document

    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
        before = reconcile.local_entries(_scope())
        do_render_document(Invoice.objects.order_by("number").first(), "xml")
        assert LedgerEvent.objects.filter(kind="DocumentRendered").exists()
        assert reconcile.local_entries(_scope()) == before
    assert {parse_head(e.head)["node-11"] for e in before} == {1}


def test_it_computes_its_digests_while_the_peer_computes_its_own(
    four: list[Sent], monkeypatch: Any
) -> None:
    peer = _snapshot(four)
    with as_node("node-31", "31"):
        for message in four:
            message.deliver()
    asked = threading.Event()
    compute = reconcile.local_cells

    def answer_digests(request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] == "digests":
            asked.set()
        return peer(request)

    def slow_local(scope: reconcile.Scope) -> Any:
        assert asked.wait(10), "the peer was asked only after this node computed its digests"
        return compute(scope)

    monkeypatch.setattr(reconcile, "local_cells", slow_local)
    assert _run(answer_digests).outcome == ReconciliationRun.Outcome.EQUAL


def test_it_records_a_run_that_failed(four: list[Sent]) -> None:
    def silent(request: dict[str, Any]) -> dict[str, Any]:
        raise reconcile.PeerError("hub did not answer digests")

    run = _run(silent)
    assert run.outcome == ReconciliationRun.Outcome.FAILED
    assert "did not answer" in run.error


# --- over NATS ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_asks_a_real_responder_over_nats(
    nats_url: str, clerk: Any, org_a: Any, org_b: Any, capsys: Any
) -> None:
    register("node-11", "11")
    register("hub", "00", "hub")
    sent = issue_many_elsewhere(clerk, org_a, [draft(org_b), draft(org_b)])
    with as_node("node-31", "31"):
        for message in sent:
            message.deliver()
    link = NatsLink(nats_url, "hub-responder")
    try:
        assert link.connect()
        with as_node("hub", "00", "hub"):
            assert Responder(link).try_subscribe()
        with as_node("node-31", "31"):
            asker = NatsLink(nats_url, "asker")
            try:
                answer = nats_peer(asker, "hub")({"op": "digests", "scope": _scope().as_dict()})
                mine = bucket_digests(cell_digests(reconcile.local_entries(_scope())))
                assert {k: tuple(v) for k, v in answer["buckets"].items()} == mine
                bad = nats_peer(asker, "hub")({"op": "nonsense"})
                assert "unknown reconciliation request" in bad["error"]
            finally:
                asker.close()
            call_command("reconcile", "--json")
    finally:
        link.close()
    shown = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["peer"] == "hub" and shown["outcome"] == "equal"
    assert shown["invoices_here"] == 2


def test_it_shows_the_runs_on_the_sync_dashboard(
    four: list[Sent], client: Any, tax_officer: Any
) -> None:
    peer = _snapshot(four)
    with as_node("node-31", "31"):
        four[0].deliver()
    _run(peer)
    client.force_login(tax_officer)
    text = client.get("/sync/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'id="reconciliation"' in text
    row = text[text.index('id="reconciliation"') :]
    assert ">hub<" in row and "3 / 0" in row  # missing here / at peer
