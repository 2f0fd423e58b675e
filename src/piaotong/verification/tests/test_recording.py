"""The write of every check under concurrency: limits stay exact when checks race, a failed
check writes nothing, SQLite's quick transaction and PostgreSQL's one statement decide alike,
and checks of different processes take turns on SQLite's write lock."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from piaotong.invoices.models import Invoice
from piaotong.verification import limits, recording
from piaotong.verification.actions import Requester, do_verify_digital
from piaotong.verification.choices import InputKind, Outcome, VerifyChannel
from piaotong.verification.models import ClientCounter, DailyCheckCount, VerificationLog

THREADS, PER_THREAD = 6, 3


def race(work: Callable[[int], Outcome]) -> Counter[Outcome]:
    """Run `work(thread, round)` PER_THREAD times in each of THREADS threads started together,
    each thread on its own database connection; the outcomes, counted."""
    outcomes: Counter[Outcome] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def run(index: int) -> None:
        try:
            start.wait()
            for _ in range(PER_THREAD):
                outcome = work(index)
                with lock:
                    outcomes[outcome] += 1
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return outcomes


def verify(invoice: Invoice, ip: str) -> Outcome:
    assert invoice.issue_date is not None
    return do_verify_digital(
        Requester(None, ip, VerifyChannel.API),
        invoice.number,
        invoice.issue_date.isoformat(),
        str(invoice.total_with_tax),
    ).outcome


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_daily_limit_when_checks_of_one_invoice_race(
    invoice: Invoice, settings: Any
) -> None:
    settings.PIAOTONG_VERIFY_DAILY_LIMIT = 5
    outcomes = race(lambda i: verify(invoice, f"192.0.2.{i}"))
    assert outcomes == Counter({Outcome.MATCH: 5, Outcome.DAILY_LIMIT: THREADS * PER_THREAD - 5})
    counted = DailyCheckCount.objects.get(ident=invoice.number)
    assert counted.checks == THREADS * PER_THREAD  # every check counted, none lost
    logged = Counter(VerificationLog.objects.values_list("outcome", flat=True))
    assert logged == Counter({str(k): v for k, v in outcomes.items()})


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_client_rate_when_checks_of_one_client_race(
    invoice: Invoice, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PIAOTONG_VERIFY_RATE_ANON = 7
    settings.PIAOTONG_VERIFY_DAILY_LIMIT = 1000
    # One instant for every check, so that no minute's window ends during the race.
    instant = timezone.now().replace(second=10)
    monkeypatch.setattr(timezone, "now", lambda: instant)
    outcomes = race(lambda i: verify(invoice, "198.51.100.7"))
    assert outcomes == Counter({Outcome.MATCH: 7, Outcome.THROTTLED: THREADS * PER_THREAD - 7})
    counter = ClientCounter.objects.get()
    assert counter.hits == THREADS * PER_THREAD
    # A throttled check does not use up the invoice's checks of the day.
    assert DailyCheckCount.objects.get(ident=invoice.number).checks == 7


@pytest.mark.django_db(transaction=True)
def test_a_check_that_fails_writes_nothing_and_leaves_the_connection_usable(
    invoice: Invoice,
) -> None:
    bad = _check(invoice_id=invoice.pk + 10_000)  # no such invoice: the log row's key fails
    with pytest.raises(DatabaseError):
        recording.record_check(bad, timezone.now())
    assert not ClientCounter.objects.exists()
    assert not DailyCheckCount.objects.exists()
    assert not VerificationLog.objects.exists()
    assert recording.record_check(_check(invoice_id=invoice.pk), timezone.now()).outcome == (
        Outcome.MATCH
    )
    assert VerificationLog.objects.count() == 1


def _check(**changes: Any) -> recording.Check:
    values: dict[str, Any] = {
        "client": "ip:test",
        "policy": limits.ClientPolicy(rate=3, miss_limit=2),
        "bulk": False,
        "daily_key": "26112000000000000077",
        "daily_limit": 2,
        "outcome": Outcome.MATCH,
        "principal": "",
        "ip_hash": "test",
        "channel": VerifyChannel.API,
        "input_kind": InputKind.DIGITAL,
        "identifier": "26112000000000000077",
        "invoice_id": None,
        "differing": "",
    } | changes
    return recording.Check(**values)


# Each scenario: checks of one client, in order: (outcome asked, daily key, bulk).
SCENARIOS = {
    "rate": [(Outcome.MATCH, "A", False)] * 5,
    "misses": [(Outcome.NOT_FOUND, "B", False)] * 3 + [(Outcome.MATCH, "C", False)],
    "mismatch then daily": [(Outcome.MISMATCH, "D", False)] + [(Outcome.MATCH, "D", False)] * 2,
    "bulk counts misses only": [(Outcome.MATCH, "E", True)] * 4
    + [(Outcome.NOT_FOUND, "F", True)] * 3,
    "invalid input": [(Outcome.INVALID, "", False)] * 2 + [(Outcome.MATCH, "G", False)] * 2,
}


@pytest.mark.django_db
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_one_statement_decides_as_the_statements_do(scenario: str) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement form is PostgreSQL's")
    now = timezone.now().replace(second=10)

    def answers(prefix: str, record: Callable[[recording.Check, datetime], Any]) -> list[Any]:
        given = []
        for outcome, key, bulk in SCENARIOS[scenario]:
            check = _check(
                client=f"{prefix}:client",
                outcome=outcome,
                daily_key=f"{prefix}{key}" if key else "",
                identifier=key,
                bulk=bulk,
            )
            given.append(record(check, now))
        logged = list(
            VerificationLog.objects.filter(
                principal="", identifier__in={k for _o, k, _b in SCENARIOS[scenario]}
            )
            .order_by("id")
            .values_list("outcome", flat=True)
        )
        VerificationLog.objects.all().delete()
        return [given, logged]

    by_statements = answers(
        "s", lambda c, t: recording._record_by_statements(c, t, recording.execute_returning)
    )
    in_one = answers("o", lambda c, t: recording._record_in_one_statement(c, t, quick=False))
    assert in_one == by_statements


# --- SQLite: checks of different processes take turns -----------------------------------------


def _hold(lock: Any, database: str, journal: str, rounds: int) -> None:
    for _ in range(rounds):
        with lock.held(database):
            with open(journal, "a") as out:
                out.write(f"enter {os.getpid()}\n")
            time.sleep(0.002)
            with open(journal, "a") as out:
                out.write(f"leave {os.getpid()}\n")


def test_checks_of_different_processes_take_turns_on_the_writer_lock(tmp_path: Path) -> None:
    lock = recording._WriterLock()
    database, journal = str(tmp_path / "db.sqlite3"), str(tmp_path / "journal")
    with lock.held(database):  # opened here first: the forked children must not share it
        pass
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_hold, args=(lock, database, journal, 20)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    lines = Path(journal).read_text().splitlines()
    assert len(lines) == 3 * 20 * 2
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("enter ") and leave == "leave " + enter.split()[1]
    assert (tmp_path / "db.sqlite3.verify-lock").exists()
