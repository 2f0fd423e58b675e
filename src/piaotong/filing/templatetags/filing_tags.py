"""Template tags of the return screens: navigation and deadline reminders."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from piaotong.accounts.access import actor_for_request
from piaotong.accounts.choices import OrganisationKind
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.filing.compute import DRILL_DOWN
from piaotong.filing.reminders import Reminder, reminders

register = template.Library()


@register.simple_tag(takes_context=True)
def may_view_returns(context: dict[str, Any]) -> bool:
    request = context.get("request")
    actor = actor_for_request(request) if request is not None else None
    return actor is not None and bool(actor.organisation_ids(Action.VIEW_RETURN))


@register.simple_tag(takes_context=True)
def filing_reminders(context: dict[str, Any]) -> list[Reminder]:
    """Returns due and not submitted for the user's organisations (those it may prepare)."""
    request = context.get("request")
    actor = actor_for_request(request) if request is not None else None
    if actor is None:
        return []
    org_ids = actor.organisation_ids(Action.PREPARE_RETURN)
    if not org_ids:
        return []
    organisations = Organisation.objects.filter(pk__in=org_ids, kind=OrganisationKind.TAXPAYER)
    return reminders(organisations, timezone.localdate())


@register.simple_tag
def drill_query(name: str) -> str:
    """The drill-down query string of a return line, e.g. part=output&rates=general."""
    from django.utils.http import urlencode

    return urlencode(DRILL_DOWN.get(name, {}))


@register.filter
def field(row: dict[str, Any], name: str) -> Any:
    return row.get(name, "")
