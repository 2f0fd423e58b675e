"""The not-found trace (为什么找不到这张发票): latency per verdict on a real local cluster.

    python bench/trace.py [--invoices 2000] [--pending 50] [--rounds 40]

A local cluster (`piaotong cluster up`: NATS, hub 00, regions 11 and 31; web processes
stopped) where node 11 issued `--invoices` invoices to a buyer in region 31, all synced; then
31's consumer is stopped and 11 issues `--pending` more, which the hub has and 31 does not. A
driver process with node 31's settings calls the trace as `piaotong trace` does
(`trace_request`, asking the hub and the home node over NATS request/reply) for each kind of
input, `--rounds` times each, in turns:

- found: a synced number (FOUND);
- pre-tax amount: a synced number with its pre-tax amount where the total is due (FIELD_MISMATCH);
- near miss: a synced number with two digits swapped, with its date and total (NEAR_MISS);
- not yet synced: a pending number (NOT_YET_SYNCED: the hub and node 11 are asked);
- nowhere: a well-formed region-11 number nobody issued (NOT_FOUND_ANYWHERE: both asked);
- malformed: 19 digits (MALFORMED, nothing asked).

Baseline, in the same driver and rounds: the local look-up of an invoice by number, the query a
verification (查验) starts with. Target (issue 5): trace p99 <= 300 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import emit, machine

from piaotong.exchange import cluster

ISSUER = """
import sys
import django; django.setup()
from piaotong.accounts.access import actor_for_user
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_invoices
from piaotong.testing import draft
count = int(sys.argv[1])
seller = Organisation.objects.get(name="北京云帆软件有限公司")
buyer = Organisation.objects.get(name="上海浦江贸易有限公司")
actor = actor_for_user(User.objects.get(username="clerk"))
while count > 0:
    n = min(500, count)
    do_issue_invoices(actor, seller, [draft(buyer) for _ in range(n)])
    count -= n
"""

DRIVER = """
import json, sys, time
import django; django.setup()
from piaotong.exchange.trace_facts import trace_request
from piaotong.exchange.trace_remote import ask_nodes
from piaotong.invoices.models import Invoice
cases, rounds, probe = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
times = {case["label"]: [] for case in cases}
verdicts = {case["label"]: {} for case in cases}
baseline = []
def run(case):
    return trace_request(None, text=case["text"], issue_date=case.get("date", ""),
                         amount=case.get("amount", ""), asker=ask_nodes)[0]
for case in cases:  # warm-up: connections, caches, the NATS link
    run(case)
for _ in range(rounds):
    for case in cases:
        started = time.perf_counter()
        result = run(case)
        times[case["label"]].append(time.perf_counter() - started)
        seen = verdicts[case["label"]]
        seen[str(result.verdict)] = seen.get(str(result.verdict), 0) + 1
    started = time.perf_counter()
    Invoice.objects.filter(number=probe).values_list("status", flat=True).first()
    baseline.append(time.perf_counter() - started)
print(json.dumps({"times": times, "verdicts": verdicts, "baseline": baseline}))
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _env(node: cluster.NodeProcesses) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIAOTONG_")} | node.env


def _run(node: cluster.NodeProcesses, code: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=_env(node),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def _rows(directory: Path, region: str, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(directory / region / "piaotong.sqlite3", timeout=60)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _count(directory: Path, region: str) -> int:
    return int(_rows(directory, region, "SELECT count(*) FROM invoices_invoice")[0][0])


def _wait(directory: Path, region: str, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while _count(directory, region) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"region {region} did not receive {count} invoices")
        time.sleep(0.5)


def _swap(number: str) -> str:
    """Two adjacent sequence digits swapped, choosing a pair that differs."""
    digits = list(number)
    for i in range(len(digits) - 2, 9, -1):
        if digits[i] != digits[i + 1]:
            digits[i], digits[i + 1] = digits[i + 1], digits[i]
            return "".join(digits)
    raise ValueError(number)


def cases(directory: Path) -> tuple[list[dict[str, str]], str]:
    issued = _rows(
        directory,
        "11",
        "SELECT number, issue_date, total_amount, total_with_tax FROM invoices_invoice "
        "WHERE number IS NOT NULL ORDER BY number",
    )
    at_31 = {row[0] for row in _rows(directory, "31", "SELECT number FROM invoices_invoice")}
    synced = [row for row in issued if row[0] in at_31]
    pending = [row for row in issued if row[0] not in at_31]
    held = {row[0] for row in issued}
    found = synced[len(synced) // 2]
    near = next(r for r in synced if _swap(r[0]) not in held)
    nowhere = found[0][:-6] + "999999"
    assert nowhere not in held
    return [
        {"label": "found", "text": found[0]},
        {"label": "pre_tax_amount", "text": found[0], "date": found[1], "amount": str(found[2])},
        {"label": "near_miss", "text": _swap(near[0]), "date": near[1], "amount": str(near[3])},
        {"label": "not_yet_synced", "text": pending[0][0]},
        {"label": "nowhere", "text": nowhere},
        {"label": "malformed", "text": found[0][:19]},
    ], found[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--pending", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    emit(bench="trace", metric="machine", value=machine(), load_average=os.getloadavg())
    directory = Path(tempfile.mkdtemp(prefix="piaotong-bench-trace-")) / "c"
    state = cluster.up(directory, ["00", "11", "31"], invoices_per_org=0, say=lambda _: None)
    try:
        for node in state.nodes:
            cluster.stop_one(directory, node.region, "web")
        base = _count(directory, "31")
        _run(state.node("11"), ISSUER, str(args.invoices))
        _wait(directory, "31", base + args.invoices)
        cluster.stop_one(directory, "31", "consumer")
        _run(state.node("11"), ISSUER, str(args.pending))
        _wait(directory, "00", _count(directory, "11"))
        # 31's consumer also answers trace requests for 31; the driver asks the others.
        chosen, probe = cases(directory)
        out = _run(state.node("31"), DRIVER, json.dumps(chosen), str(args.rounds), probe)
        result = json.loads(out.strip().splitlines()[-1])
        everything: list[float] = []
        for label, times in result["times"].items():
            everything += times
            emit(bench="trace", metric=f"trace_ms_{label}", n=len(times),
                 p50=round(percentile(times, 50) * 1000, 2),
                 p99=round(percentile(times, 99) * 1000, 2), unit="ms",
                 verdicts=result["verdicts"][label])  # fmt: skip
        baseline = result["baseline"]
        p99 = percentile(everything, 99) * 1000
        emit(bench="trace", metric="trace_p99_ms_all_inputs", n=len(everything),
             value=round(p99, 2), unit="ms", p50=round(percentile(everything, 50) * 1000, 2),
             baseline_lookup_p50_ms=round(percentile(baseline, 50) * 1000, 3),
             baseline_lookup_p99_ms=round(percentile(baseline, 99) * 1000, 3),
             target="<= 300 ms", ok=bool(p99 <= 300),
             load_average=os.getloadavg())  # fmt: skip
    finally:
        cluster.down(directory, say=lambda _: None)


if __name__ == "__main__":
    main()
