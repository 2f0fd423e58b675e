"""What a web session knows about its login (登录状态), and when it ends.

A login has two steps. After the password, a user with an authenticator is *pending* (待验证):
the session remembers who passed the password for a few minutes but nobody is logged in, so
no page, API call or admin screen treats the visitor as that user. Only after the second
factor does `complete_login` call Django's `login` (which gives the session a new key: no
session fixation) and stamp the session with the login time and the factor used.

A logged-in session ends after 30 minutes without a request (idle timeout) and 12 hours after
the login whatever the activity (absolute timeout). A session without our stamp was not made
by this login flow (Django's admin login, a session from before the stamp existed) and counts
as expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import login
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from django.utils import timezone

from piaotong.accounts.models import User

LOGIN_AT = "piaotong.login_at"
SEEN_AT = "piaotong.seen_at"
SECOND_FACTOR = "piaotong.second_factor"
PENDING = "piaotong.pending"

PENDING_TIMEOUT = timedelta(minutes=5)
# The last-activity stamp is rewritten at most this often, not on every request: a session
# write per request would cost a query on every page for a precision nobody needs.
SEEN_RESOLUTION = timedelta(minutes=1)


def idle_timeout() -> timedelta:
    return timedelta(seconds=settings.PIAOTONG_SESSION_IDLE_SECONDS)


def absolute_timeout() -> timedelta:
    return timedelta(seconds=settings.PIAOTONG_SESSION_ABSOLUTE_SECONDS)


def _stamp(moment: datetime) -> float:
    return moment.timestamp()


def _moment(stamp: object) -> datetime | None:
    if not isinstance(stamp, int | float):
        return None
    return datetime.fromtimestamp(stamp, tz=timezone.get_current_timezone())


# --- Pending: the password is right, the second factor is still owed -----------------


@dataclass(frozen=True)
class Pending:
    user_id: int
    next_url: str


def begin_pending(request: HttpRequest, user: User, next_url: str, now: datetime) -> None:
    """Remember that `user` passed the password step; the session key changes right away."""
    request.session.cycle_key()
    request.session[PENDING] = {"user": user.pk, "at": _stamp(now), "next": next_url}


def pending(request: HttpRequest, now: datetime) -> Pending | None:
    """Who is between the two steps in this session, unless the pause was too long."""
    data = request.session.get(PENDING)
    if not isinstance(data, dict):
        return None
    started = _moment(data.get("at"))
    if started is None or now - started > PENDING_TIMEOUT:
        request.session.pop(PENDING, None)
        return None
    return Pending(user_id=int(data["user"]), next_url=str(data.get("next", "")))


def pending_user(request: HttpRequest, now: datetime) -> tuple[User, str] | None:
    """The pending user and where they were going, if the pending state is still valid."""
    state = pending(request, now)
    if state is None:
        return None
    user = User.objects.filter(pk=state.user_id, is_active=True).first()
    return (user, state.next_url) if user is not None else None


# --- Logged in -------------------------------------------------------------------------


def complete_login(request: HttpRequest, user: User, *, second_factor: bool, now: datetime) -> None:
    """Log `user` in (new session key) and stamp the session with the login time and factor."""
    request.session.pop(PENDING, None)
    login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    stamp_login(request.session, second_factor=second_factor, now=now)


def stamp_login(session: SessionBase, *, second_factor: bool, now: datetime) -> None:
    session[LOGIN_AT] = _stamp(now)
    session[SEEN_AT] = _stamp(now)
    session[SECOND_FACTOR] = second_factor


def mark_second_factor(request: HttpRequest) -> None:
    """This session has now proved a second factor (the user just set up an authenticator).

    The session gets a new key, as at every change of what a session is allowed to do.
    """
    request.session.cycle_key()
    request.session[SECOND_FACTOR] = True


def has_second_factor(session: SessionBase) -> bool:
    return session.get(SECOND_FACTOR) is True


def expiry(session: SessionBase, now: datetime) -> str | None:
    """Why this logged-in session is over ("idle", "absolute", "unstamped"), or None."""
    login_at, seen_at = _moment(session.get(LOGIN_AT)), _moment(session.get(SEEN_AT))
    if login_at is None or seen_at is None:
        return "unstamped"
    if now - login_at >= absolute_timeout():
        return "absolute"
    if now - seen_at >= idle_timeout():
        return "idle"
    return None


def touch(session: SessionBase, now: datetime) -> None:
    """Record activity, writing the session only when the stamp is a minute old."""
    seen_at = _moment(session.get(SEEN_AT))
    if seen_at is None or now - seen_at >= SEEN_RESOLUTION:
        session[SEEN_AT] = _stamp(now)
