"""The long fault-injection soak: the scenario of exchange/tests/test_fault_injection.py with
longer issuing under faults, repeated with new seeds.

    python bench/soak.py [--rounds 5] [--seconds 120] [--seed 1]

Each round starts a fresh local cluster (NATS + hub + 11 + 31), issues in 11 and 31 for
`--seconds` while killing relays, consumers, NATS, web and issuing processes at random
moments, publishes stored messages again past a shortened duplicate window, restores the hub
from an early backup, reconciles, and checks: every invoice at every node exactly once, every
ledger chain valid, nothing quarantined, all digests equal. One JSON line per round; the
process exits 1 on the first violation. Bounded: it stops by itself after the rounds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import emit, machine

from piaotong.exchange.tests.test_fault_injection import scenario


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    emit(bench="soak", metric="machine", value=machine())
    for round_ in range(args.rounds):
        seed = args.seed + round_
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="piaotong-soak-") as tmp:
            try:
                result = scenario(Path(tmp) / "cluster", args.seconds, seed, say=lambda _: None)
            except AssertionError as exc:
                emit(bench="soak", metric="round", seed=seed, ok=False, error=str(exc)[:4000])
                return 1
        emit(bench="soak", metric="round", seed=seed, ok=True,
             seconds=round(time.monotonic() - started, 1), invoices=result["invoices"],
             faults=len(result["faults"]), redelivered=result["redelivered"],
             repaired=result["repaired"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
