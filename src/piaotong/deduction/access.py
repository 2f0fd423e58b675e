"""Access helpers for received invoices (进项): scoping, and 404 for what the actor may not see.

An organisation's received invoices are the issued invoices naming it as buyer (`Invoice.buyer`);
its members holding VIEW_PURCHASES see them here. Drafts are never received.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.invoices.models import Invoice, InvoiceQuerySet


def received_invoices(actor: Actor, organisation_ids: list[int] | None = None) -> InvoiceQuerySet:
    """Issued invoices bought by the actor's organisations (optionally only some of them)."""
    allowed = actor.organisation_ids(Action.VIEW_PURCHASES)
    if organisation_ids is not None:
        allowed = [org for org in allowed if org in organisation_ids]
    return Invoice.objects.filter(buyer_id__in=allowed, number__isnull=False)


def get_received_invoice_for_actor(actor: Actor, ref: str | uuid.UUID) -> Invoice:
    """A received invoice by id (UUID) or 20-digit number, or 404."""
    try:
        lookup = Q(uid=ref if isinstance(ref, uuid.UUID) else uuid.UUID(ref))
    except ValueError:
        lookup = Q(number=str(ref).strip())
    invoice = received_invoices(actor).select_related("seller", "buyer").filter(lookup).first()
    if invoice is None:
        raise Http404("No such received invoice")
    return invoice


def buyers_for_actor(actor: Actor, action: Action = Action.VIEW_PURCHASES) -> list[Organisation]:
    return list(Organisation.objects.filter(pk__in=actor.organisation_ids(action)))


def get_buyer_for_actor(
    actor: Actor, organisation: int | str | None, action: Action = Action.VIEW_PURCHASES
) -> Organisation:
    """The buyer organisation named by id or tax id, else the actor's first one; 404 if the
    actor may not do `action` there, PermissionDenied if it may do it nowhere."""
    organisations = Organisation.objects.filter(pk__in=actor.organisation_ids(action))
    if organisation in (None, ""):
        found = organisations.order_by("name", "pk").first()
        if found is None:
            raise PermissionDenied("This role cannot do that for any organisation")
        return found
    if isinstance(organisation, int) or str(organisation).isdigit():
        found = organisations.filter(pk=int(organisation)).first()
    else:
        found = organisations.filter(tax_id=str(organisation).strip().upper()).first()
    if found is None:
        raise Http404("No such organisation")
    return found
