"""Template context every page needs: which sections of the navigation the user may open."""

from __future__ import annotations

from django.http import HttpRequest

from piaotong.accounts.access import actor_for_request, reviewing_regions
from piaotong.accounts.permissions import Action


def navigation(request: HttpRequest) -> dict[str, dict[str, bool]]:
    actor = actor_for_request(request)
    if actor is None:
        return {"nav": {}}
    return {
        "nav": {
            "audit_log": bool(actor.organisation_ids(Action.VIEW_AUDIT_LOG)),
            "red_letters": bool(actor.organisation_ids(Action.REQUEST_RED_LETTER)),
            "invoices_export": bool(actor.organisation_ids(Action.VIEW_INVOICES)),
            # Costs a query only for tax officers (no grant of the action, no query).
            "registrations": bool(reviewing_regions(actor)),
        }
    }
