"""Template tags of reconciliation: the recent runs for the sync dashboard's section."""

from __future__ import annotations

from django import template

from piaotong.exchange.models import ReconciliationRun

register = template.Library()
RECENT_RUNS = 10


@register.simple_tag
def recent_reconciliations() -> list[ReconciliationRun]:
    """The last runs of this node, newest first (one query)."""
    return list(ReconciliationRun.objects.all()[:RECENT_RUNS])
