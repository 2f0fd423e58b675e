"""Sync between nodes: end-to-end lag, raw NATS latency, a naive batch sync, catch-up, and
reconciliation of a large node, on a real local cluster (`piaotong cluster`).

    python bench/sync.py [--phase lag,catchup,reconcile] [--rates 100,500] [--seconds 30]
                         [--backlog 10000] [--filler 999000] [--missing 1000]

Phases, each on a fresh cluster under a temporary directory (web processes are stopped so the
two cores go to issuing, relays and consumers):
- lag: node 11 issues to a buyer in 31 at each rate (one `do_issue_invoices` commit every 50 ms)
  for `--seconds`; lag = commit (the ledger event's `occurred_at`) -> inbox `applied_at` at the
  hub and at 31, read from each node's database; the relay's share (outbox `created_at` ->
  `published_at` at node 11) separately. Same run: raw JetStream publish -> pull-fetch
  latency at the same rate (baseline), and a naive scheduled batch sync every 60 s (the
  article's 定时任务) computed from the same commit times: lag = time to the next batch run
  (every phase of the 60 s schedule equally likely) + the batch's own apply time at the
  consumer's measured apply rate.
- catchup: 31's consumer stopped, node 11 issues a backlog of `--backlog` invoices, the consumer
  is started; events/s from its first to its last apply (and wall clock from its start).
- reconcile: the hub and node 11 hold the same `--filler` invoices spread over 365 days (rows
  copied in SQL from one real issued invoice, with one ledger event each); node 11 also issued
  `--missing` real signed invoices with its relay stopped, so the hub lacks them.
  `piaotong reconcile --peer node-11` at the hub detects and repairs them through the inbox.
Peak RSS (VmHWM) of every node process is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import emit, machine

from piaotong.exchange import cluster

ISSUER = """
import sys, time, json
import django; django.setup()
from piaotong.accounts.access import actor_for_user
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_invoices
from piaotong.testing import draft
rate, seconds, tick = float(sys.argv[1]), float(sys.argv[2]), 0.05
seller = Organisation.objects.get(name="北京云帆软件有限公司")
buyer = Organisation.objects.get(name="上海浦江贸易有限公司")
actor = actor_for_user(User.objects.get(username="clerk"))
start, issued, owed = time.monotonic(), 0, 0.0
while time.monotonic() - start < seconds:
    owed += rate * tick
    n = int(owed) if rate > 0 else 500
    if n:
        do_issue_invoices(actor, seller, [draft(buyer) for _ in range(n)])
        issued += n
        owed -= n
    if rate > 0:
        time.sleep(max(0.0, start + (issued / rate) - time.monotonic()))
print(json.dumps({"issued": issued, "seconds": time.monotonic() - start}))
"""


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _env(node: cluster.NodeProcesses) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIAOTONG_")} | node.env


def issue(state: cluster.ClusterState, rate: float, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", ISSUER, str(rate), str(seconds)],
        env=_env(state.node("11")),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _db(state: cluster.ClusterState, region: str) -> sqlite3.Connection:
    return sqlite3.connect(Path(state.directory) / region / "piaotong.sqlite3", timeout=60)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def applied(state: cluster.ClusterState, region: str) -> list[tuple[datetime, datetime]]:
    db = _db(state, region)
    try:
        rows = db.execute(
            "SELECT occurred_at, applied_at FROM exchange_inboxevent WHERE kind='InvoiceIssued'"
        ).fetchall()
    finally:
        db.close()
    return [(_time(a), _time(b)) for a, b in rows]


def issued_times(state: cluster.ClusterState) -> list[datetime]:
    db = _db(state, "11")
    try:
        rows = db.execute(
            "SELECT occurred_at FROM ledger_ledgerevent WHERE kind='InvoiceIssued' "
            "AND writer='node-11'"
        ).fetchall()
    finally:
        db.close()
    return [_time(r[0]) for r in rows]


def published(state: cluster.ClusterState) -> list[tuple[datetime, datetime]]:
    """(created_at, published_at) of node 11's published outbox rows: the relay's share."""
    db = _db(state, "11")
    try:
        rows = db.execute(
            "SELECT created_at, published_at FROM exchange_outboxevent "
            "WHERE published_at IS NOT NULL"
        ).fetchall()
    finally:
        db.close()
    return [(_time(a), _time(b)) for a, b in rows]


def wait_count(state: cluster.ClusterState, region: str, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(applied(state, region)) >= count:
            return True
        time.sleep(0.5)
    return False


def rss_mb(state: cluster.ClusterState) -> dict[str, float]:
    out = {}
    for node in state.nodes:
        for kind, pid in node.pids.items():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM"):
                        out[f"{node.region}-{kind}"] = round(int(line.split()[1]) / 1024, 1)
            except OSError:
                pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_cluster(regions: list[str], env_extra: dict[str, str]) -> tuple[Path, Any]:
    directory = Path(tempfile.mkdtemp(prefix="piaotong-bench-sync-")) / "c"
    state = cluster.up(directory, regions, invoices_per_org=0, say=lambda _: None)
    for node in state.nodes:
        cluster.stop_one(directory, node.region, "web")
        if env_extra:
            cluster.stop_one(directory, node.region, "consumer")
            node.env.update(env_extra)
            node.pids.pop("consumer")
    state.save()
    for node in state.nodes:
        if env_extra:
            cluster.start_one(directory, node.region, "consumer")
    return directory, cluster.ClusterState.load(directory)


# --- raw NATS baseline -----------------------------------------------------------------------


def raw_nats(url: str, rate: float, seconds: float) -> list[float]:
    """JetStream publish -> pull-fetch latency of 1 KB messages at `rate` (seconds)."""
    import asyncio

    import nats

    async def main() -> list[float]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        subject = "bench.raw"
        with contextlib.suppress(Exception):  # absent the first time
            await js.delete_stream("BENCHRAW")
        await js.add_stream(name="BENCHRAW", subjects=[subject])
        sub = await js.pull_subscribe(subject, durable="bench")
        latencies: list[float] = []
        done = asyncio.Event()

        async def consume() -> None:
            while not done.is_set() or len(latencies) < sent:
                try:
                    for msg in await sub.fetch(200, timeout=0.5):
                        latencies.append(time.time() - float(msg.data[:20].decode()))
                        await msg.ack()
                except nats.errors.TimeoutError:
                    if done.is_set():
                        break

        sent = 0
        task = asyncio.create_task(consume())
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await js.publish(subject, f"{time.time():20.6f}".encode() + b"x" * 1000)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
        done.set()
        await asyncio.wait_for(task, 30)
        await js.delete_stream("BENCHRAW")
        await nc.close()
        return latencies

    return asyncio.run(main())


def batch_sync_lags(commits: list[datetime], apply_rate: float) -> list[float]:
    """Lags of a sync job that runs every 60 s and applies everything committed before it."""
    lags: list[float] = []
    t0 = min(commits)
    for phase in range(0, 60):
        runs: dict[int, int] = {}
        for c in commits:
            k = int(((c - t0).total_seconds() - phase) // 60) + 1
            runs[k] = runs.get(k, 0) + 1
        for c in commits:
            offset = (c - t0).total_seconds() - phase
            k = int(offset // 60) + 1
            wait = k * 60 - offset
            lags.append(wait + runs[k] / apply_rate)
    return lags


# --- phases ----------------------------------------------------------------------------------


def phase_lag(rates: list[float], seconds: float) -> None:
    directory, state = start_cluster(["00", "11", "31"], {})
    try:
        time.sleep(3)
        for rate in rates:
            before = {r: len(applied(state, r)) for r in ("00", "31")}
            started = datetime.now(UTC)
            result = issue(state, rate, seconds)
            achieved = result["issued"] / result["seconds"]
            for region in ("00", "31"):
                wait_count(state, region, before[region] + result["issued"], 120)
            warm = started + timedelta(seconds=2)
            for region, name in (("00", "hub"), ("31", "buyer_region")):
                lags = [
                    (b - a).total_seconds() * 1000 for a, b in applied(state, region) if a >= warm
                ]
                for p, target in ((50, 200), (99, 1000)):
                    value = percentile(lags, p)
                    emit(bench="sync", metric=f"lag_p{p}_ms_{name}", db="sqlite",
                         rate_target=rate, rate_achieved=round(achieved, 1), n=len(lags),
                         value=round(value, 1), unit="ms",
                         target=f"<= {target} ms at 100/s",
                         ok=bool(value <= target) if rate == 100 else None)  # fmt: skip
            relay = [(b - a).total_seconds() * 1000 for a, b in published(state) if a >= warm]
            for p in (50, 99):
                emit(bench="sync", metric=f"relay_p{p}_ms", rate_target=rate, n=len(relay),
                     value=round(percentile(relay, p), 1), unit="ms",
                     note="node 11: outbox created_at -> published_at (part of the lag)")  # fmt: skip
            raw = [x * 1000 for x in raw_nats(state.nats_url, achieved, min(seconds, 15))]
            for p in (50, 99):
                emit(bench="sync", metric=f"raw_nats_p{p}_ms", rate_target=rate,
                     rate_achieved=round(achieved, 1), n=len(raw),
                     value=round(percentile(raw, p), 2), unit="ms")  # fmt: skip
            commits = [c for c in issued_times(state) if c >= warm]
            hub = applied(state, "00")
            span = (max(b for _, b in hub) - min(b for _, b in hub)).total_seconds() or 1
            batch = batch_sync_lags(commits, max(len(hub) / span, 1.0))
            for p in (50, 99):
                emit(bench="sync", metric=f"batch60_p{p}_ms", rate_target=rate,
                     value=round(percentile(batch, p) * 1000), unit="ms",
                     note="computed from the same commit times")  # fmt: skip
        emit(bench="sync", metric="peak_rss_mb_by_process", value=rss_mb(state), unit="MB")
    finally:
        cluster.down(directory, say=lambda _: None)


def phase_catchup(backlog: int) -> None:
    directory, state = start_cluster(["00", "11", "31"], {})
    try:
        cluster.stop_one(directory, "31", "consumer")
        issued = 0
        while issued < backlog:
            got = issue_fast(state, min(5000, backlog - issued))
            issued += got
        assert wait_count(state, "00", issued, 600), "the hub did not receive the backlog"
        start_wall = time.monotonic()
        cluster.start_one(directory, "31", "consumer")
        state = cluster.ClusterState.load(directory)
        # The consumer's CPU once it has started up (its first event applied): the catch-up's own.
        while not applied(state, "31"):
            time.sleep(0.05)
        cpu_at_first = cpu_seconds(state.node("31").pids["consumer"])
        count_at_first = len(applied(state, "31"))
        ok = wait_count(state, "31", issued, 1200)
        wall = time.monotonic() - start_wall
        times = sorted(b for _, b in applied(state, "31"))
        span = (times[-1] - times[0]).total_seconds()
        emit(bench="sync", metric="catchup_events_per_s", backlog=issued, complete=ok,
             value=round(issued / span, 1), unit="1/s", wall_clock_s=round(wall, 1),
             target=">= 2000/s", ok=issued / span >= 2000)  # fmt: skip
        tenth = max(1, len(times) // 10)
        emit(bench="sync", metric="catchup_events_per_s_by_tenth", unit="1/s",
             value=[round(tenth / max((times[min(k + tenth, len(times) - 1)] - times[k])
                                      .total_seconds(), 1e-6), 1)
                    for k in range(0, len(times) - tenth, tenth)],
             note="rate within each tenth of the backlog, in order of application")  # fmt: skip
        cpu = cpu_seconds(state.node("31").pids["consumer"])
        emit(bench="sync", metric="catchup_consumer_cpu_ms_per_event", backlog=issued,
             value=round((cpu - cpu_at_first) * 1000 / (issued - count_at_first), 3), unit="ms",
             startup_cpu_s=round(cpu_at_first, 2), load_average=os.getloadavg(),
             note="31's consumer process: CPU time from its first applied event to the last, "
                  "per event (start-up excluded); other work on the machine inflates it less "
                  "than the wall-clock rate")  # fmt: skip
        emit(bench="sync", metric="peak_rss_mb_by_process", value=rss_mb(state), unit="MB")
    finally:
        cluster.down(directory, say=lambda _: None)


FAST_ISSUER = ISSUER.replace("rate, seconds, tick = float(sys.argv[1]), float(sys.argv[2]), 0.05",
                             "rate, seconds, tick = 0, 1e9, 0.05\nlimit = int(sys.argv[1])")  # fmt: skip
FAST_ISSUER = FAST_ISSUER.replace(
    "while time.monotonic() - start < seconds:", "while issued < limit:"
).replace("n = int(owed) if rate > 0 else 500", "n = min(500, limit - issued)")


def issue_fast(state: cluster.ClusterState, count: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAST_ISSUER, str(count)],
        env=_env(state.node("11")),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1])["issued"])


def fill(state: cluster.ClusterState, region: str, count: int, seed: int) -> None:
    """Copy the first real invoice of region 11 `count` times (same rows on every node)."""
    db = _db(state, region)
    rng = random.Random(seed)
    try:
        db.execute("PRAGMA synchronous=OFF")
        cols = [r[1] for r in db.execute("PRAGMA table_info(invoices_invoice)")]
        template = dict(
            zip(
                cols,
                db.execute(
                    "SELECT * FROM invoices_invoice WHERE number LIKE '__11%' ORDER BY id LIMIT 1"
                ).fetchone(),
                strict=True,
            )
        )
        ecols = [r[1] for r in db.execute("PRAGMA table_info(ledger_ledgerevent)")]
        payload = db.execute(  # a real InvoiceIssued payload: rows of realistic size
            "SELECT payload FROM ledger_ledgerevent WHERE kind='InvoiceIssued' ORDER BY id LIMIT 1"
        ).fetchone()[0]
        first = date.today() - timedelta(days=400)

        def rows(i: int) -> tuple[list[Any], list[Any]]:
            uid = uuid.UUID(int=rng.getrandbits(128), version=4)
            row = template | {
                "id": None,
                "uid": uid.hex,
                "number": f"2511{9}{i:015d}",
                "payload_hash": f"{rng.getrandbits(256):064x}",
                "issue_date": (first + timedelta(days=i % 365)).isoformat(),
            }
            event = {
                "id": None,
                "event_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                "stream": f"invoice:{uid}",
                "writer": "node-11",
                "seq": 1,
                "kind": "InvoiceIssued",
                "schema_version": 1,
                "payload": payload,
                "prev_hash": "",
                "hash": f"{rng.getrandbits(256):064x}",
                "occurred_at": "2025-01-01 00:00:00",
            }
            return [row[c] for c in cols], [event[c] for c in ecols]

        # Chunks of 20,000 rows per transaction, made as they are inserted (the bench process
        # holds one chunk, not a million rows): the nodes' workers keep running meanwhile, and
        # SQLite's one write lock must not be held past their busy timeout.
        imarks, emarks = ",".join("?" * len(cols)), ",".join("?" * len(ecols))
        for start in range(0, count, 20_000):
            chunk = [rows(i) for i in range(start, min(count, start + 20_000))]
            db.executemany(f"INSERT INTO invoices_invoice VALUES ({imarks})", [r for r, _ in chunk])
            db.executemany(
                f"INSERT INTO ledger_ledgerevent VALUES ({emarks})", [e for _, e in chunk]
            )
            db.commit()
    finally:
        db.close()


def run_measured(args: list[str], env: dict[str, str]) -> tuple[Any, Any]:
    """Run a command to completion: (its CompletedProcess, its own resource usage: CPU time and
    peak RSS of that one child, from wait4)."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr, text=True)
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        done = subprocess.CompletedProcess(args, proc.returncode, stdout.read(), stderr.read())
    return done, rusage


def phase_reconcile(filler: int, missing: int) -> None:
    directory, state = start_cluster(["00", "11"], {"PIAOTONG_RECONCILE_EVERY_SECONDS": "0"})
    try:
        issue_fast(state, 1)
        assert wait_count(state, "00", 1, 60)
        cluster.stop_one(directory, "11", "relay")
        issue_fast(state, missing)
        t = time.monotonic()
        fill(state, "00", filler, 7)
        fill(state, "11", filler, 7)
        fill_s = time.monotonic() - t
        for region in ("00", "11"):  # a worker that died meanwhile is started again
            cluster.start_one(directory, region, "consumer")
        state = cluster.ClusterState.load(directory)
        time.sleep(3)
        env = _env(state.node("00"))
        answering = state.node("11").pids["consumer"]
        load, answer_cpu = os.getloadavg(), cpu_seconds(answering)
        t = time.monotonic()
        out, rusage = run_measured(
            [sys.executable, "-m", "piaotong.cli", "reconcile", "--peer", "node-11", "--from",
             (date.today() - timedelta(days=401)).isoformat(), "--json"],
            env,
        )  # fmt: skip
        seconds = time.monotonic() - t
        run = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
        emit(bench="sync", metric="reconcile_seconds", invoices=filler + missing + 1,
             missing=missing, value=round(seconds, 1), unit="s", run=run,
             fill_seconds=round(fill_s, 1), stderr=out.stderr[-500:] if out.returncode else "",
             requester_cpu_s=round(rusage.ru_utime + rusage.ru_stime, 1),
             requester_peak_rss_mb=round(rusage.ru_maxrss / 1024, 1),
             answering_consumer_cpu_s=round(cpu_seconds(answering) - answer_cpu, 1),
             steps=next((line.split(": ", 1)[-1] for line in out.stderr.splitlines()
                         if "reconciliation with node-11:" in line), ""),
             load_average_before=load, load_average_after=os.getloadavg(),
             target="<= 60 s, all repaired",
             ok=seconds <= 60 and run.get("repaired_here") == missing)  # fmt: skip
        emit(bench="sync", metric="peak_rss_mb_by_process", value=rss_mb(state), unit="MB")
    finally:
        cluster.down(directory, say=lambda _: None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", default="lag,catchup,reconcile")
    parser.add_argument("--rates", default="100,500")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--filler", type=int, default=999_000)
    parser.add_argument("--missing", type=int, default=1000)
    args = parser.parse_args()
    emit(bench="sync", metric="machine", value=machine())
    phases = args.phase.split(",")
    if "lag" in phases:
        phase_lag([float(r) for r in args.rates.split(",")], args.seconds)
    if "catchup" in phases:
        phase_catchup(args.backlog)
    if "reconcile" in phases:
        phase_reconcile(args.filler, args.missing)


if __name__ == "__main__":
    main()
