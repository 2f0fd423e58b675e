"""Template tags of reconciliation: whether the navigation shows it, explanations of items."""

from __future__ import annotations

from typing import Any

from django import template

from piaotong.accounts.access import actor_for_request
from piaotong.reconciliation.access import may_reconcile as actor_may_reconcile
from piaotong.reconciliation.explain import explain
from piaotong.reconciliation.models import ReconciliationItem

register = template.Library()


@register.simple_tag(takes_context=True)
def may_reconcile(context: dict[str, Any]) -> bool:
    """Whether the user may import and match purchases anywhere (no query beyond the actor)."""
    request = context.get("request")
    return actor_may_reconcile(actor_for_request(request) if request is not None else None)


@register.filter
def explanation(item: ReconciliationItem) -> str:
    return explain(item.rule, item.diffs, item.notes)
