"""Who sees which ticket: its opening organisation's tracers, and the tax officers
(`Action.HANDLE_TICKETS` in an approved tax bureau) of the ticket's region. Anyone else: 404."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet
from django.http import Http404

from piaotong.accounts.access import Actor
from piaotong.accounts.choices import OrganisationKind, OrganisationStatus
from piaotong.accounts.models import Organisation, User
from piaotong.accounts.permissions import PERMISSIONS, Action
from piaotong.support.models import Ticket


def handling_regions(actor: Actor) -> set[str]:
    """Regions whose tickets the actor handles as a tax officer."""
    bureau_ids = actor.organisation_ids(Action.HANDLE_TICKETS)
    if actor.user is None or not bureau_ids:
        return set()
    return set(
        Organisation.objects.filter(
            pk__in=bureau_ids,
            kind=OrganisationKind.TAX_BUREAU,
            status=OrganisationStatus.APPROVED,
        ).values_list("region", flat=True)
    )


def visible_tickets(actor: Actor) -> QuerySet[Ticket]:
    visible = Q(organisation_id__in=actor.organisation_ids(Action.TRACE_INVOICE))
    regions = handling_regions(actor)
    if regions:
        visible |= Q(region__in=regions)
    return Ticket.objects.filter(visible)


def get_ticket_for_actor(actor: Actor, ref: str) -> Ticket:
    try:
        uid = uuid.UUID(ref)
    except ValueError:
        raise Http404("no such ticket") from None
    ticket = visible_tickets(actor).filter(uid=uid).select_related("organisation").first()
    if ticket is None:
        raise Http404("no such ticket")
    return ticket


def is_handler(actor: Actor, ticket: Ticket) -> bool:
    return ticket.region in handling_regions(actor)


def officers_of(region: str) -> QuerySet[User]:
    """Active users who handle tickets for `region` (tax officers of its approved bureaus)."""
    roles = [role for role, actions in PERMISSIONS.items() if Action.HANDLE_TICKETS in actions]
    return User.objects.filter(
        is_active=True,
        memberships__role__in=roles,
        memberships__organisation__kind=OrganisationKind.TAX_BUREAU,
        memberships__organisation__status=OrganisationStatus.APPROVED,
        memberships__organisation__region=region,
    ).distinct()
