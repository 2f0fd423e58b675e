"""Limits on verification (查验限制): checks per invoice per day, and per client against enumeration.

- Daily limit (每日查验次数): at most `PIAOTONG_VERIFY_DAILY_LIMIT` (5) checks of one invoice per
  natural day in Asia/Shanghai, counted per invoice whoever asks, as the real platform does;
  不一致 and 查无此票 answers count too (for an unknown invoice, by the identifier typed). The
  sixth check is refused until midnight.
- Client limit (防枚举): fixed windows per client (an anonymous IP address, a user or an API
  key): at most `rate` checks a minute, and at most `miss_limit` answers of 查无此票 or 不一致 an
  hour; past that the client is refused everything until the hour's window ends. Guessing
  numbers produces misses, so enumeration is throttled much harder than honest use.

The decisions are pure (`decide_client`, `daily_refused`) and take the counts the database
returned; the counters are single `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` statements
(SQLite 3.35+ and PostgreSQL), so concurrent checks never lose a count and need no row lock.
`recording` runs them with the log row in one transaction (on PostgreSQL as one statement).

>>> policy = ClientPolicy(rate=30, miss_limit=20)
>>> decide_client(policy, hits=31, misses=0, this_miss=False, now=90.0)
Refusal(code='throttled', retry_after=30)
>>> decide_client(policy, hits=5, misses=21, this_miss=True, now=90.0)
Refusal(code='throttled_misses', retry_after=3510)
>>> decide_client(policy, hits=5, misses=20, this_miss=True, now=90.0) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.crypto import salted_hmac

from piaotong.accounts.access import Actor
from piaotong.fastsql import execute_returning
from piaotong.verification.conf import setting
from piaotong.verification.models import ClientCounter, DailyCheckCount

RATE_WINDOW = 60
MISS_WINDOW = 3600


@dataclass(frozen=True)
class ClientPolicy:
    rate: int  # checks per RATE_WINDOW seconds
    miss_limit: int  # 查无此票/不一致 answers per MISS_WINDOW seconds


@dataclass(frozen=True)
class Refusal:
    code: str  # "throttled", "throttled_misses" or "daily_limit"
    retry_after: int  # seconds


def window_start(now: float, length: int) -> int:
    """The start (epoch seconds) of the fixed window of `length` seconds containing `now`."""
    return int(now // length) * length


def decide_client(
    policy: ClientPolicy, hits: int, misses: int, this_miss: bool, now: float
) -> Refusal | None:
    """Whether a client may have this answer, given its counts *including* this check.

    Misses before this one decide the block, so the answer that reaches the limit is still
    given and the next check is refused.
    """
    if misses - int(this_miss) >= policy.miss_limit:
        return Refusal("throttled_misses", until_window_ends(now, MISS_WINDOW))
    if hits > policy.rate:
        return Refusal("throttled", until_window_ends(now, RATE_WINDOW))
    return None


def until_window_ends(now: float, length: int) -> int:
    """Whole seconds (at least 1) until the window of `length` seconds containing `now` ends."""
    return max(1, math.ceil(window_start(now, length) + length - now))


def daily_refused(count: int, limit: int) -> bool:
    """The count includes this check: the (limit + 1)th check of the day is refused.

    >>> daily_refused(5, 5), daily_refused(6, 5)
    (False, True)
    """
    return count > limit


def seconds_until_tomorrow(now: datetime) -> int:
    """Seconds until the next midnight in Asia/Shanghai, when the daily counts start afresh."""
    local = timezone.localtime(now)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
    return max(1, math.ceil((timezone.make_aware(midnight) - local).total_seconds()))


# --- Who is the client -------------------------------------------------------------------


def hash_ip(ip: str) -> str:
    """The address as it is stored: a keyed hash, so logs and counters never hold raw IPs."""
    return _hash_ip(ip, settings.SECRET_KEY) if ip else ""


@lru_cache(maxsize=4096)
def _hash_ip(ip: str, secret: str) -> str:
    # Remembered per secret: a client's address is hashed for its counter and its log row
    # on every check, and the HMAC's key derivation costs more than the rest of the hash.
    return salted_hmac("piaotong.verification.ip", ip, secret=secret).hexdigest()[:32]


def client_key(actor: Actor | None, ip: str) -> str:
    """The counter key: the user or API key when authenticated, else the IP address's hash."""
    if actor is not None and actor.principal != "system":
        return actor.principal
    return f"ip:{hash_ip(ip)}"


def client_policy(actor: Actor | None) -> ClientPolicy:
    if actor is not None and actor.principal != "system":
        return ClientPolicy(
            setting("PIAOTONG_VERIFY_RATE_USER"), setting("PIAOTONG_VERIFY_MISS_LIMIT_USER")
        )
    return ClientPolicy(
        setting("PIAOTONG_VERIFY_RATE_ANON"), setting("PIAOTONG_VERIFY_MISS_LIMIT_ANON")
    )


# --- Counters in the database --------------------------------------------------------------


def _client_sql() -> str:
    return _client_sql_for(connection.vendor)


@lru_cache(maxsize=4)
def _client_sql_for(vendor: str) -> str:
    table = connection.ops.quote_name(ClientCounter._meta.db_table)
    return (
        f"INSERT INTO {table} (client, rate_window, hits, miss_window, misses) "  # noqa: S608
        "VALUES (%s, %s, 1, %s, %s) ON CONFLICT (client) DO UPDATE SET "
        f"hits = CASE WHEN {table}.rate_window = excluded.rate_window "
        f"THEN {table}.hits + 1 ELSE 1 END, "
        "rate_window = excluded.rate_window, "
        f"misses = CASE WHEN {table}.miss_window = excluded.miss_window "
        f"THEN {table}.misses + excluded.misses ELSE excluded.misses END, "
        "miss_window = excluded.miss_window "
        "RETURNING hits, misses"
    )


Execute = Callable[[str, Sequence[Any]], "tuple[Any, ...] | None"]


def count_client(
    key: str, now: float, miss: bool, bulk: bool = False, execute: Execute = execute_returning
) -> tuple[int, int]:
    """Count one check (and one miss) for the client; returns (hits this minute, misses this
    hour), this check included. Bulk rows count misses only: a bulk upload is one request.

    `execute` runs the statement and returns its first row (`fastsql.execute_returning`, or
    the driver directly inside `recording`'s quick SQLite transaction)."""
    rate_window = window_start(now, RATE_WINDOW)
    miss_window = window_start(now, MISS_WINDOW)
    row = execute(_client_sql(), [key, rate_window, miss_window, int(miss)])
    assert row is not None
    hits, misses = int(row[0]), int(row[1])
    return (0 if bulk else hits), misses


def _daily_sql() -> str:
    return _daily_sql_for(connection.vendor)


@lru_cache(maxsize=4)
def _daily_sql_for(vendor: str) -> str:
    table = connection.ops.quote_name(DailyCheckCount._meta.db_table)
    return (
        f"INSERT INTO {table} (ident, day, checks) VALUES (%s, %s, 1) "  # noqa: S608
        f"ON CONFLICT (ident, day) DO UPDATE SET checks = {table}.checks + 1 RETURNING checks"
    )


def count_daily(key: str, day: date, execute: Execute = execute_returning) -> int:
    """Count one check of the invoice `key` on `day`; returns the day's count, this one included."""
    row = execute(_daily_sql(), [key, day])
    assert row is not None
    return int(row[0])


def checks_today(key: str, day: date) -> int:
    found = (
        DailyCheckCount.objects.filter(ident=key, day=day).values_list("checks", flat=True).first()
    )
    return found or 0
