"""The write of every check (查验记录): count it for the client and the invoice, apply the limits,
append the log row; one transaction.

Order and decisions (the rules are in `limits`): the client's counters are bumped first; a client
over its limits is refused, and its check does not count against the invoice (a throttled
guesser cannot use up an invoice's checks of the day). Otherwise a valid check bumps the
invoice's count of the day, and the (limit + 1)th is refused. The log row records the answer
given, refusals included. Every count is a single upsert whose RETURNING gives the count with
this check included, so concurrent checks never lose or share a count.

How each database runs it, and why (measured in docs/benchmarks.md, `bench/verify.py`):

- PostgreSQL: one statement. Data-modifying WITH clauses bump both counters and insert the log
  row, the refusals decided in SQL by the same comparisons as `limits.decide_client` and
  `limits.daily_refused`; outside a caller's transaction it runs on its own (autocommit) with
  `synchronous_commit` off for itself. With the read of the invoice (`queries`), a check makes
  two round trips where it made eight (read, lines, BEGIN, SET LOCAL, three writes, COMMIT).
- SQLite: the statements in order, the decisions in Python between them, inside
  `BEGIN IMMEDIATE ... COMMIT` issued directly and with `synchronous = NORMAL` for the
  transaction. SQLite admits one writer at a time; a writer that finds the lock taken sleeps
  1, 2, 5, 10 ... 100 ms however soon it frees, so checks queue on a lock of their own instead:
  a thread lock within the process and an flock(2) on a file beside the database between
  processes, both of which wake the next writer as soon as the lock is released.

A check's commit does not wait for the disk: it writes only counters and a log row, never an
invoice, so losing the last moments of them to a power failure or an operating-system crash is
acceptable (an application crash loses nothing), while an fsync per check would cap
verification at the disk's flush rate. PIAOTONG_VERIFY_SYNC_COMMIT=true waits for the disk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from piaotong.fastsql import execute_returning
from piaotong.verification import limits
from piaotong.verification.choices import MISSES, Outcome
from piaotong.verification.conf import flag
from piaotong.verification.models import ClientCounter, DailyCheckCount, VerificationLog

try:
    import fcntl
except ImportError:  # not POSIX: checks of different processes meet SQLite's busy wait
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Check:
    """One check to record: who asked, the answer before the limits, and what to log.

    `daily_key` is the invoice's identifier (its number, or "<code>:<number>"); empty for an
    invalid input, which counts for the client only.
    """

    client: str
    policy: limits.ClientPolicy
    bulk: bool
    daily_key: str
    daily_limit: int
    outcome: Outcome
    principal: str
    ip_hash: str
    channel: str
    input_kind: str
    identifier: str
    invoice_id: int | None
    differing: str

    @property
    def is_miss(self) -> bool:
        return self.outcome in MISSES


@dataclass(frozen=True)
class Recorded:
    """The answer after the limits: the outcome given, the invoice's checks today (this one
    included; None when it was not counted) and, for a refusal, seconds until it lifts."""

    outcome: Outcome
    checks_today: int | None
    retry_after: int | None


def record_check(check: Check, now: datetime) -> Recorded:
    """Count, decide and log one check, in one transaction (see the module's docstring)."""
    db = connections[DEFAULT_DB_ALIAS]
    sync = flag("PIAOTONG_VERIFY_SYNC_COMMIT")
    if db.vendor == "postgresql":
        return _record_in_one_statement(check, now, quick=not sync and not db.in_atomic_block)
    # The quick path runs only where nobody watches the queries (DEBUG, assertNumQueries):
    # its statements go to the driver directly.
    if db.vendor == "sqlite" and not (sync or db.in_atomic_block or db.queries_logged):
        with _sqlite_quick_transaction(db) as execute:
            return _record_by_statements(check, now, execute)
    with transaction.atomic():
        return _record_by_statements(check, now, execute_returning)


def _recorded(check: Check, now: datetime, refusal: str | None, checks: int | None) -> Recorded:
    """The answer for a refusal code ("throttled", "throttled_misses", "daily_limit") or None."""
    if refusal == "daily_limit":
        return Recorded(Outcome.DAILY_LIMIT, checks, limits.seconds_until_tomorrow(now))
    if refusal is not None:
        window = limits.MISS_WINDOW if refusal == "throttled_misses" else limits.RATE_WINDOW
        return Recorded(
            Outcome.THROTTLED, checks, limits.until_window_ends(now.timestamp(), window)
        )
    return Recorded(check.outcome, checks, None)


# --- Statement by statement (SQLite) ----------------------------------------------------------


def _record_by_statements(check: Check, now: datetime, execute: limits.Execute) -> Recorded:
    stamp = now.timestamp()
    hits, misses = limits.count_client(
        check.client, stamp, check.is_miss, bulk=check.bulk, execute=execute
    )
    refusal = limits.decide_client(check.policy, hits, misses, check.is_miss, stamp)
    code = refusal.code if refusal else None
    checks: int | None = None
    if code is None and check.daily_key:
        checks = limits.count_daily(check.daily_key, timezone.localdate(now), execute=execute)
        if limits.daily_refused(checks, check.daily_limit):
            code = "daily_limit"
    recorded = _recorded(check, now, code, checks)
    execute(_log_sql(), _log_params(check, now, recorded.outcome))
    return recorded


@lru_cache(maxsize=4)
def _log_sql_for(vendor: str) -> str:
    ops = connections[DEFAULT_DB_ALIAS].ops
    columns = ", ".join(ops.quote_name(name) for name in LOG_COLUMNS)
    table = ops.quote_name(VerificationLog._meta.db_table)
    values = ", ".join(["%s"] * len(LOG_COLUMNS))
    # RETURNING: every statement of the sequence is run by one `execute` that reads a row.
    return f"INSERT INTO {table} ({columns}) VALUES ({values}) RETURNING id"  # noqa: S608


def _log_sql() -> str:
    return _log_sql_for(connections[DEFAULT_DB_ALIAS].vendor)


LOG_COLUMNS = (
    "created_at",
    "principal",
    "ip_hash",
    "channel",
    "input_kind",
    "outcome",
    "identifier",
    "invoice_id",
    "differing",
)


def _log_params(check: Check, now: datetime, outcome: str) -> list[Any]:
    """The log row's values in LOG_COLUMNS order, as the ORM would store them."""
    created_at = connections[DEFAULT_DB_ALIAS].ops.adapt_datetimefield_value(now)
    return [
        created_at,
        check.principal,
        check.ip_hash,
        str(check.channel),
        str(check.input_kind),
        str(outcome),
        check.identifier[:40],
        check.invoice_id,
        check.differing[:200],
    ]


@lru_cache(maxsize=16)
def _qmark(sql: str) -> str:
    """The statement with sqlite3's placeholders (this module's SQL has no literal %)."""
    return sql.replace("%s", "?")


# --- SQLite: the transaction of a check -------------------------------------------------------


class _WriterLock:
    """The queue of a process's checks for SQLite's write lock: a thread lock, then an
    exclusive flock(2) on `<database>.verify-lock` against the other processes.

    The file is opened once per process (a descriptor inherited across fork would share the
    parent's lock, so a new process opens its own). In-memory databases have no file and no
    other process: the thread lock suffices.
    """

    def __init__(self) -> None:
        self._thread_lock = threading.Lock()
        self._files: dict[tuple[int, str], int] = {}

    @contextmanager
    def held(self, database: str | None) -> Iterator[None]:
        with self._thread_lock:
            descriptor = self._descriptor(database) if database else None
            if descriptor is None:
                yield
                return
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)

    def _descriptor(self, database: str) -> int | None:
        if fcntl is None:
            return None
        key = (os.getpid(), database)
        if key not in self._files:
            self._files[key] = os.open(
                f"{database}.verify-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        return self._files[key]


_writer = _WriterLock()


@contextmanager
def _sqlite_quick_transaction(db: Any) -> Iterator[limits.Execute]:
    """BEGIN IMMEDIATE ... COMMIT on the connection's own sqlite3 handle, with `synchronous =
    NORMAL` around it and the connection's setting restored after; gives the block a function
    that runs a statement on that handle and returns its first row.

    Issued directly rather than through `transaction.atomic` and Django's cursors: nothing but
    this module's statements runs inside, and the bookkeeping of both cost more than the
    check's writes themselves (measured: 65 µs of Python around 60 µs of SQLite's work). The
    pragma cannot change inside a transaction, so it is set before BEGIN.
    """
    db.ensure_connection()
    raw = db.connection

    def execute(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        # Read to the end: a statement with RETURNING left unfinished would hold up COMMIT.
        rows = raw.execute(_qmark(sql), params).fetchall()
        return tuple(rows[0]) if rows else None

    database = None if db.is_in_memory_db() else str(db.settings_dict["NAME"])
    with db.wrap_database_errors:
        previous = getattr(db, "_piaotong_synchronous", None)
        if previous is None:
            previous = int(raw.execute("PRAGMA synchronous").fetchone()[0])
            db._piaotong_synchronous = previous
        raw.execute("PRAGMA synchronous = NORMAL")
        try:
            with _writer.held(database):
                raw.execute("BEGIN IMMEDIATE")
                try:
                    yield execute
                    # Foreign keys are checked here (Django declares them deferred); a failed
                    # COMMIT leaves the transaction open, to be rolled back below.
                    raw.execute("COMMIT")
                except BaseException:
                    if raw.in_transaction:  # SQLite may have rolled back by itself
                        raw.execute("ROLLBACK")
                    raise
        finally:
            raw.execute(f"PRAGMA synchronous = {previous:d}")


# --- PostgreSQL: one statement ----------------------------------------------------------------


@lru_cache(maxsize=4)
def _one_statement_sql(quick: bool) -> str:
    ops = connections[DEFAULT_DB_ALIAS].ops
    client = ops.quote_name(ClientCounter._meta.db_table)
    daily = ops.quote_name(DailyCheckCount._meta.db_table)
    log = ops.quote_name(VerificationLog._meta.db_table)
    columns = ", ".join(ops.quote_name(name) for name in LOG_COLUMNS)
    # set_config(..., true) lasts until the end of the transaction, which is this statement's
    # when it runs on its own: its commit then does not wait for the WAL flush.
    sync = ", set_config('synchronous_commit', 'off', true)" if quick else ""
    # Parameters, in order: client, rate window, miss window, is miss (0/1); bulk (twice),
    # is miss, miss limit, rate; daily key, day, counts daily; throttled, daily limit,
    # daily_limit, the check's outcome, then the log row's other values.
    return f"""
WITH c AS (
  INSERT INTO {client} (client, rate_window, hits, miss_window, misses)
  VALUES (%s, %s, 1, %s, %s)
  ON CONFLICT (client) DO UPDATE SET
    hits = CASE WHEN {client}.rate_window = excluded.rate_window
                THEN {client}.hits + 1 ELSE 1 END,
    rate_window = excluded.rate_window,
    misses = CASE WHEN {client}.miss_window = excluded.miss_window
                  THEN {client}.misses + excluded.misses ELSE excluded.misses END,
    miss_window = excluded.miss_window
  RETURNING hits, misses
), k AS (
  SELECT CASE WHEN %s::boolean THEN 0 ELSE c.hits END AS hits, c.misses,
         CASE WHEN c.misses - %s::integer >= %s::integer THEN 'throttled_misses'
              WHEN (CASE WHEN %s::boolean THEN 0 ELSE c.hits END) > %s::integer
              THEN 'throttled' END AS refusal
  FROM c
), d AS (
  INSERT INTO {daily} (ident, day, checks)
  SELECT %s::varchar, %s::date, 1 FROM k WHERE k.refusal IS NULL AND %s::boolean
  ON CONFLICT (ident, day) DO UPDATE SET checks = {daily}.checks + 1
  RETURNING checks
), l AS (
  INSERT INTO {log} ({columns})
  SELECT %s::timestamptz, %s::varchar, %s::varchar, %s::varchar, %s::varchar,
         CASE WHEN k.refusal IS NOT NULL THEN %s::varchar
              WHEN (SELECT checks FROM d) > %s::integer THEN %s::varchar
              ELSE %s::varchar END,
         %s::varchar, %s::bigint, %s::varchar
  FROM k
)
SELECT k.hits, k.misses, k.refusal, (SELECT checks FROM d){sync} FROM k
"""  # noqa: S608 - our tables and columns


def _record_in_one_statement(check: Check, now: datetime, quick: bool) -> Recorded:
    stamp = now.timestamp()
    log = _log_params(check, now, check.outcome)
    params = [
        check.client,
        limits.window_start(stamp, limits.RATE_WINDOW),
        limits.window_start(stamp, limits.MISS_WINDOW),
        int(check.is_miss),
        check.bulk,
        int(check.is_miss),
        check.policy.miss_limit,
        check.bulk,
        check.policy.rate,
        check.daily_key,
        timezone.localdate(now),
        bool(check.daily_key),
        *log[:5],
        str(Outcome.THROTTLED),
        check.daily_limit,
        str(Outcome.DAILY_LIMIT),
        str(check.outcome),
        *log[6:],
    ]
    row = execute_returning(_one_statement_sql(quick), params)
    assert row is not None
    refusal, checks = row[2], row[3]
    if refusal is None and checks is not None and limits.daily_refused(checks, check.daily_limit):
        refusal = "daily_limit"
    return _recorded(check, now, refusal, checks)
