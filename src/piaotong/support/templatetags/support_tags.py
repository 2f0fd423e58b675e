from typing import Any

from django import template

from piaotong.accounts.access import actor_for_request
from piaotong.accounts.permissions import Action

register = template.Library()


@register.simple_tag(takes_context=True)
def support_links(context: Any) -> dict[str, bool]:
    """Which of the trace and the ticket pages the logged-in user may open."""
    request = context.get("request")
    actor = actor_for_request(request) if request is not None else None
    if actor is None:
        return {"trace": False, "tickets": False}
    trace = bool(actor.organisation_ids(Action.TRACE_INVOICE))
    return {"trace": trace, "tickets": trace or bool(actor.organisation_ids(Action.HANDLE_TICKETS))}
