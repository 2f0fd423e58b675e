"""Small helpers of the buyer-side and filing screens (shared with `piaotong.filing.views`)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from piaotong.accounts.access import Actor, actor_for_request
from piaotong.lib.errors import RuleViolation, RuleViolations


def actor_of(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    assert actor is not None  # every view using it is behind login_required
    return actor


def is_partial(request: HttpRequest) -> bool:
    """An htmx request that swaps part of the page (not a history restore, which needs all)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request  # type: ignore[union-attr]


def show_refusal(request: HttpRequest, error: RuleViolation | RuleViolations) -> None:
    violations = error.violations if isinstance(error, RuleViolations) else [error]
    for violation in violations:
        messages.error(request, violation.text())


def safe_next(request: HttpRequest, fallback: str) -> str:
    """The POSTed `next` address if it stays on this site, else `fallback`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, request.is_secure()
    ):
        return target
    return fallback
