"""Template tags of the permission change pages: whether the navigation shows them."""

from __future__ import annotations

from typing import Any

from django import template

from piaotong.accounts.access import actor_for_request
from piaotong.accounts.permissions import Action
from piaotong.accounts.views_roles import may_manage_access as actor_may_manage_access

register = template.Library()


@register.simple_tag(takes_context=True)
def may_manage_access(context: dict[str, Any]) -> bool:
    """Whether the user manages or reviews roles anywhere; no query beyond the request's actor."""
    request = context.get("request")
    actor = actor_for_request(request) if request is not None else None
    return actor is not None and actor_may_manage_access(actor)


@register.simple_tag(takes_context=True)
def administers(context: dict[str, Any], organisation_id: int) -> bool:
    """Whether the user is an admin of the organisation (who may, e.g., apply again)."""
    request = context.get("request")
    actor = actor_for_request(request) if request is not None else None
    return actor is not None and actor.can(Action.APPROVE_ROLE_CHANGE, organisation_id)
