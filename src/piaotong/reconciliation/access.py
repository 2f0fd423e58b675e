"""Access helpers: imports are seen by members allowed to view purchases of the organisation,
and answer 404 to everyone else (never 403, which would reveal that they exist)."""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.invoices.models import Invoice
from piaotong.lib.errors import RuleViolation
from piaotong.reconciliation.models import ImportJob, ReconciliationItem


def jobs_for_actor(actor: Actor) -> QuerySet[ImportJob]:
    return ImportJob.objects.filter(
        organisation_id__in=actor.organisation_ids(Action.VIEW_PURCHASES)
    ).select_related("organisation")


def get_job_for_actor(actor: Actor, uid: uuid.UUID | str) -> ImportJob:
    try:
        key = uuid.UUID(str(uid))
    except ValueError:
        raise Http404("No such import") from None
    job = jobs_for_actor(actor).filter(uid=key).first()
    if job is None:
        raise Http404("No such import")
    return job


def get_item_for_actor(
    actor: Actor, job: ImportJob, item_id: int | None = None, row: int | None = None
) -> ReconciliationItem:
    """An item of a job the actor sees, by id or by the row number of its record."""
    items = ReconciliationItem.objects.filter(job=job).select_related("job__organisation")
    item = (
        items.filter(pk=item_id).first() if item_id is not None else items.filter(row=row).first()
    )
    if item is None:
        raise Http404("No such item")
    return item


def get_received_invoice(job: ImportJob, number: str) -> Invoice:
    """An invoice received by the job's organisation, by number; 404 otherwise."""
    invoice = Invoice.objects.filter(buyer_id=job.organisation_id, number=number.strip()).first()
    if invoice is None:
        raise Http404("No such invoice")
    return invoice


def organisations_for_import(actor: Actor) -> QuerySet[Organisation]:
    return Organisation.objects.filter(pk__in=actor.organisation_ids(Action.RECONCILE_PURCHASES))


def may_reconcile(actor: Actor | None) -> bool:
    return actor is not None and bool(actor.organisation_ids(Action.RECONCILE_PURCHASES))


def get_organisation_for_import(actor: Actor, tax_id: str | None) -> Organisation:
    """The organisation the actor imports for: named by tax id, or its only one; 404 for one it
    may not reconcile for."""
    organisations = organisations_for_import(actor)
    if tax_id:
        found = organisations.filter(tax_id=tax_id.strip().upper()).first()
        if found is None:
            raise Http404("No such organisation")
        return found
    candidates = list(organisations[:2])
    if not candidates:
        raise PermissionDenied("This role or API key cannot reconcile purchases")
    if len(candidates) > 1:
        raise RuleViolation(
            "organisation_tax_id",
            "organisation_required",
            _("You reconcile for several organisations: name one with organisation_tax_id."),
        )
    return candidates[0]
