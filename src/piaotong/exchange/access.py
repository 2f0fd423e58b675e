"""Who may see the exchange's state: users holding `VIEW_SYNC` somewhere (organisation admins,
tax officers). The pages show node-wide counts and reasons, never invoice contents."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _

from piaotong.accounts.access import Actor
from piaotong.accounts.permissions import Action


def may_view_sync(actor: Actor | None) -> bool:
    return actor is not None and bool(actor.organisation_ids(Action.VIEW_SYNC))


def require_view_sync(actor: Actor | None) -> None:
    if not may_view_sync(actor):
        raise PermissionDenied(_("Your roles do not include viewing the exchange status."))
