"""The one place where a logged-in browser session is checked on every request.

In order: the session's timeouts (`session_state.expiry`); then the second factor. A user who
must use two-factor login (`twofactor.is_two_factor_required`) but has no authenticator (yet,
or any more) reaches only the set-up page and logout, and their session does not authenticate
API calls either. A session of a user with an authenticator that never proved it was not made
by the two-step login (or predates the authenticator): it is logged out.

Requests with an API key carry no session user and pass untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django_htmx.http import HttpResponseClientRedirect

from piaotong.accounts import session_state
from piaotong.accounts.models import User
from piaotong.accounts.twofactor import has_confirmed_device, is_two_factor_required

SETUP_URL_NAME = "accounts:totp_setup"
# Pages a user who owes the authenticator set-up may still open.
OPEN_URL_NAMES = (SETUP_URL_NAME, "accounts:logout", "set_language")


class LoginSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if isinstance(user, User):
            refusal = self.check(request, user)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    def check(self, request: HttpRequest, user: User) -> HttpResponse | None:
        now = timezone.now()
        ended = session_state.expiry(request.session, now)
        if ended is not None:
            logout(request)
            if ended != "unstamped" and not _is_api(request):
                messages.info(request, _timeout_message(ended))
            return None
        session_state.touch(request.session, now)
        has_device = has_confirmed_device(user)
        if not has_device and is_two_factor_required(user):
            return _confine_to_setup(request)
        if has_device and not session_state.has_second_factor(request.session):
            logout(request)
        return None


def _confine_to_setup(request: HttpRequest) -> HttpResponse | None:
    if _is_api(request):
        request.user = AnonymousUser()
        return None
    if any(request.path == reverse(name) for name in OPEN_URL_NAMES):
        return None
    if request.path.startswith(str(settings.STATIC_URL)):
        return None
    messages.warning(
        request,
        _("Your role requires two-factor login. Set up an authenticator app to continue."),
    )
    url = reverse(SETUP_URL_NAME)
    if request.headers.get("HX-Request") == "true":
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _timeout_message(ended: str) -> str:
    if ended == "absolute":
        hours = int(session_state.absolute_timeout().total_seconds() // 3600)
        return _(
            "You were logged out %(hours)s hours after logging in. Log in again to continue."
        ) % {"hours": hours}
    minutes = int(session_state.idle_timeout().total_seconds() // 60)
    return _(
        "You were logged out after %(minutes)s minutes without activity. Log in again to continue."
    ) % {"minutes": minutes}
