"""Login throttling (登录限流): lock a username or an IP address after repeated failures.

Five failures for one username, or twenty from one IP address, within fifteen minutes lock
that key for fifteen minutes (the cool-off, 冷却期). A locked key is refused before the password
is checked, so guessing goes no further during the lock. Second-factor failures count like
password failures: otherwise a stolen password would allow unlimited guesses of six digits.

The arithmetic is pure (`after_failure`, `is_locked`) and takes `now`, so tests move time by
passing it. The row functions run inside the caller's transaction (`accounts.actions`).

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2025, 1, 1, tzinfo=UTC)
>>> state = None
>>> for minute in range(5):
...     state = after_failure(state, t0 + timedelta(minutes=minute), USERNAME_LIMIT)
>>> is_locked(state, t0 + timedelta(minutes=18)), is_locked(state, t0 + timedelta(minutes=19))
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest

from piaotong.accounts.models import LoginThrottle, ThrottleScope

USERNAME_LIMIT = 5
IP_LIMIT = 20
WINDOW = timedelta(minutes=15)
COOL_OFF = timedelta(minutes=15)
LIMITS = {ThrottleScope.USERNAME: USERNAME_LIMIT, ThrottleScope.IP: IP_LIMIT}


@dataclass(frozen=True)
class ThrottleState:
    failures: int
    window_started_at: datetime
    locked_until: datetime | None = None


def is_locked(state: ThrottleState | None, now: datetime) -> bool:
    return state is not None and state.locked_until is not None and now < state.locked_until


def after_failure(
    state: ThrottleState | None,
    now: datetime,
    limit: int,
    window: timedelta = WINDOW,
    cool_off: timedelta = COOL_OFF,
) -> ThrottleState:
    """The state after one more failure at `now`.

    A window that has run out starts afresh; reaching `limit` locks the key for the cool-off
    and empties the count, so after the cool-off the next `limit` failures are allowed again.
    """
    if state is None or now - state.window_started_at >= window:
        state = ThrottleState(failures=0, window_started_at=now)
    failures = state.failures + 1
    if failures >= limit:
        return ThrottleState(failures=0, window_started_at=now, locked_until=now + cool_off)
    return ThrottleState(failures, state.window_started_at, state.locked_until)


def username_key(username: str) -> str:
    """The throttle key of a typed username: case and surrounding spaces do not make a new key.

    >>> username_key("  Alice ")
    'alice'
    """
    return username.strip().casefold()[:150]


def keys_for(username: str, ip: str) -> list[tuple[ThrottleScope, str]]:
    keys = [(ThrottleScope.USERNAME, username_key(username))]
    if ip:
        keys.append((ThrottleScope.IP, ip))
    return keys


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the one the outermost trusted proxy saw.

    Each trusted proxy appends the address it received from to X-Forwarded-For, so with N
    proxies the Nth entry from the right is the client; entries further left are forgeable.
    """
    proxies = settings.PIAOTONG_TRUSTED_PROXIES
    if proxies > 0:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        if len(forwarded) >= proxies and forwarded[-proxies]:
            return forwarded[-proxies][:45]
    return str(request.META.get("REMOTE_ADDR", ""))[:45]


def locked_until(username: str, ip: str, now: datetime) -> datetime | None:
    """When the later lock on this username or this IP address ends; None if neither is locked."""
    ends = [
        row.locked_until
        for row in _rows(username, ip)
        if is_locked(_state(row), now) and row.locked_until is not None
    ]
    return max(ends, default=None)


def record_failure(username: str, ip: str, now: datetime) -> None:
    """Count one failure against the username and the IP address (inside a transaction)."""
    assert transaction.get_connection().in_atomic_block
    for scope, key in keys_for(username, ip):
        # Insert-if-missing, then lock: concurrent failures on one key queue on the row lock.
        LoginThrottle.objects.bulk_create(
            [LoginThrottle(scope=scope, key=key, window_started_at=now)], ignore_conflicts=True
        )
        row = LoginThrottle.objects.select_for_update().get(scope=scope, key=key)
        state = after_failure(_state(row), now, LIMITS[ThrottleScope(scope)])
        row.failures, row.window_started_at = state.failures, state.window_started_at
        row.locked_until = state.locked_until
        row.save(update_fields=["failures", "window_started_at", "locked_until"])


def forget_username(username: str, now: datetime) -> None:
    """A completed login wipes the username's count; the IP's count stays (it may be shared)."""
    LoginThrottle.objects.filter(scope=ThrottleScope.USERNAME, key=username_key(username)).exclude(
        locked_until__gt=now
    ).delete()


def _rows(username: str, ip: str) -> list[LoginThrottle]:
    wanted = Q()
    for scope, key in keys_for(username, ip):
        wanted |= Q(scope=scope, key=key)
    return list(LoginThrottle.objects.filter(wanted))


def _state(row: LoginThrottle) -> ThrottleState | None:
    if row.failures == 0 and row.locked_until is None:
        return None
    return ThrottleState(row.failures, row.window_started_at, row.locked_until)


# Registration applications (注册申请) from one IP address: each stores documents, so five per
# hour, then the address waits an hour. Counted like failures, on the same table.
REGISTRATION_LIMIT = 5
REGISTRATION_WINDOW = timedelta(hours=1)


def registration_locked_until(ip: str, now: datetime) -> datetime | None:
    """When the IP address may apply again; None if it may apply now."""
    return _ip_locked_until(ThrottleScope.REGISTRATION, ip, now)


def record_registration(ip: str, now: datetime) -> None:
    """Count one application from the IP address (inside the application's transaction)."""
    _count_ip(ThrottleScope.REGISTRATION, ip, now, REGISTRATION_LIMIT, REGISTRATION_WINDOW)


# Attempts to accept an invitation (接受邀请) from one IP address: ten per quarter of an hour,
# then a quarter of an hour's wait, which makes guessing a 256-bit token hopeless twice over.
INVITATION_LIMIT = 10


def invitation_locked_until(ip: str, now: datetime) -> datetime | None:
    """When the IP address may try an invitation link again; None if it may now."""
    return _ip_locked_until(ThrottleScope.INVITATION, ip, now)


def record_invitation_attempt(ip: str, now: datetime) -> None:
    """Count one acceptance attempt from the IP address (inside a transaction)."""
    _count_ip(ThrottleScope.INVITATION, ip, now, INVITATION_LIMIT, WINDOW)


def _ip_locked_until(scope: ThrottleScope, ip: str, now: datetime) -> datetime | None:
    if not ip:
        return None
    row = LoginThrottle.objects.filter(scope=scope, key=ip).first()
    if row is None or not is_locked(_state(row), now):
        return None
    return row.locked_until


def _count_ip(scope: ThrottleScope, ip: str, now: datetime, limit: int, window: timedelta) -> None:
    """Count one attempt; reaching `limit` within `window` locks the address for `window`."""
    assert transaction.get_connection().in_atomic_block
    if not ip:
        return
    LoginThrottle.objects.bulk_create(
        [LoginThrottle(scope=scope, key=ip, window_started_at=now)], ignore_conflicts=True
    )
    row = LoginThrottle.objects.select_for_update().get(scope=scope, key=ip)
    state = after_failure(_state(row), now, limit, window, window)
    row.failures, row.window_started_at = state.failures, state.window_started_at
    row.locked_until = state.locked_until
    row.save(update_fields=["failures", "window_started_at", "locked_until"])
