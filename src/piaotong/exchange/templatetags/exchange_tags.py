"""Template tags of the exchange: whether the navigation shows the sync dashboard."""

from __future__ import annotations

from typing import Any

from django import template

from piaotong.accounts.access import actor_for_request
from piaotong.exchange.access import may_view_sync as actor_may_view_sync

register = template.Library()


@register.simple_tag(takes_context=True)
def may_view_sync(context: dict[str, Any]) -> bool:
    """No query beyond the request's actor, which the page builds anyway."""
    request = context.get("request")
    return actor_may_view_sync(actor_for_request(request) if request is not None else None)
