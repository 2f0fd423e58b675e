"""The sync dashboard (同步状态) and the Prometheus metrics of the exchange."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.views.decorators.http import require_GET

from piaotong.accounts.access import actor_for_request
from piaotong.exchange.access import require_view_sync
from piaotong.exchange.config import number
from piaotong.exchange.metrics import metrics_text
from piaotong.exchange.models import QuarantinedEvent
from piaotong.exchange.nodes import this_node
from piaotong.exchange.status import sync_summary

RECENT_QUARANTINE = 20


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponseBase:
    require_view_sync(actor_for_request(request))
    me = this_node()
    summary = sync_summary(me.node_id)
    lag_alert = number("PIAOTONG_SYNC_LAG_ALERT_SECONDS", 60)
    outbox_alert = number("PIAOTONG_OUTBOX_AGE_ALERT_SECONDS", 300)
    alerts = {
        "outbox": (summary.outbox_oldest_age_seconds or 0) > outbox_alert,
        "lag": any((p.last_lag_seconds or 0) > lag_alert for p in summary.peers),
        "quarantine": summary.quarantined > 0,
        "workers": [w for w in summary.workers if w.state != "running"],
    }
    quarantined = QuarantinedEvent.objects.filter(released_at__isnull=True)[:RECENT_QUARANTINE]
    return render(
        request,
        "exchange/dashboard.html",
        {
            "me": me,
            "summary": summary,
            "alerts": alerts,
            "quarantined": quarantined,
            "lag_alert": lag_alert,
            "outbox_alert": outbox_alert,
        },
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; counts only, no invoice data (scrape from the private network)."""
    body, content_type = metrics_text()
    return HttpResponse(body, content_type=content_type)
