"""Template tags of the received-invoice and deduction screens."""

from __future__ import annotations

from typing import Any

from django import template

from piaotong.accounts.access import actor_for_request
from piaotong.accounts.permissions import Action
from piaotong.deduction.choices import BuyerUsage, NonDeductionReason, PeriodStatus, Purpose

register = template.Library()


@register.simple_tag(takes_context=True)
def may_view_purchases(context: dict[str, Any]) -> bool:
    """Whether the navigation shows received invoices; no query beyond the request's actor."""
    request = context.get("request")
    actor = actor_for_request(request) if request is not None else None
    return actor is not None and bool(actor.organisation_ids(Action.VIEW_PURCHASES))


@register.filter
def period_status_label(status: str | None) -> str:
    return str(PeriodStatus(status).label) if status else ""


@register.filter
def purpose_label(purpose: str | None) -> str:
    return str(Purpose(purpose).label) if purpose else ""


@register.filter
def reason_label(reason: str | None) -> str:
    return str(NonDeductionReason(reason).label) if reason else ""


@register.filter
def usage_label(usage: str | None) -> str:
    return str(BuyerUsage(usage or "").label)
