"""Access helpers for invoices: scoping and 404s for anything the actor may not see."""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor, reviewing_regions
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.invoices.models import Invoice, InvoiceQuerySet, RedLetterConfirmation
from piaotong.lib.errors import RuleViolation


def visible_invoices(actor: Actor) -> InvoiceQuerySet:
    """Invoices where one of the actor's organisations is seller or buyer; buyers never see drafts.

    A tax officer of a tax bureau (税务机关) also reads every issued invoice whose seller is in
    the bureau's region: the authority side's cross-organisation read. Drafts stay private.
    """
    org_ids = actor.organisation_ids(Action.VIEW_INVOICES)
    visible = Q(seller_id__in=org_ids) | (Q(buyer_id__in=org_ids) & Q(number__isnull=False))
    regions = reviewing_regions(actor)
    if regions:
        visible |= Q(number__isnull=False, seller__region__in=regions)
    return Invoice.objects.filter(visible)


def require_invoice_reader(actor: Actor) -> None:
    """Refuse listing to someone whose roles read no invoices at all (e.g. a platform admin)."""
    if not actor.organisation_ids(Action.VIEW_INVOICES):
        raise PermissionDenied(_("None of your roles may read invoices."))


def get_invoice_for_actor(actor: Actor, ref: str) -> Invoice:
    """An invoice by id (UUID) or 20-digit number, or 404 if it does not exist for this actor."""
    invoices = visible_invoices(actor).select_related("seller", "buyer")
    try:
        lookup = Q(uid=uuid.UUID(ref))
    except ValueError:
        lookup = Q(number=ref.strip())
    invoice = invoices.filter(lookup).first()
    if invoice is None:
        raise Http404("No such invoice")
    return invoice


def get_seller_for_actor(actor: Actor, tax_id: str | None, action: Action) -> Organisation:
    """The organisation the actor issues for: named by tax id, or its only one."""
    org_ids = actor.organisation_ids(action)
    if tax_id:
        seller = Organisation.objects.filter(pk__in=org_ids, tax_id=tax_id.strip().upper()).first()
        if seller is None:
            raise Http404("No such organisation")
        return seller
    if not org_ids:
        raise PermissionDenied("This role or API key cannot do that for any organisation")
    if len(org_ids) != 1:
        raise RuleViolation(
            "seller_tax_id",
            "seller_required",
            _("You may issue for %(count)s organisations: name the seller with seller_tax_id."),
            {"count": len(org_ids)},
        )
    return Organisation.objects.get(pk=org_ids[0])


def visible_confirmations(actor: Actor) -> QuerySet[RedLetterConfirmation]:
    """Red-letter confirmations (红字确认单) about invoices the actor's organisations sold or
    received: the seller and the buyer both see, and answer, what concerns them."""
    org_ids = actor.organisation_ids(Action.VIEW_INVOICES)
    return RedLetterConfirmation.objects.filter(
        Q(blue_invoice__seller_id__in=org_ids) | Q(blue_invoice__buyer_id__in=org_ids)
    )


def get_confirmation_for_actor(actor: Actor, ref: str) -> RedLetterConfirmation:
    """A confirmation by its id (UUID), or 404 if it does not exist for this actor."""
    try:
        uid = uuid.UUID(str(ref))
    except ValueError:
        raise Http404("No such red-letter confirmation") from None
    found = (
        visible_confirmations(actor)
        .select_related("blue_invoice__seller", "blue_invoice__buyer", "red_invoice")
        .filter(uid=uid)
        .first()
    )
    if found is None:
        raise Http404("No such red-letter confirmation")
    return found
