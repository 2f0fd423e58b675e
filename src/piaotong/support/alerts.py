"""Sync alerts (同步告警): email the tax officers of this node's region once per episode.

An episode starts when the oldest unpublished outbox event is older than
`PIAOTONG_OUTBOX_AGE_ALERT_SECONDS` (default 300) or the last event of a peer arrived more than
`PIAOTONG_SYNC_LAG_ALERT_SECONDS` (default 60) after it was committed (the same thresholds as
the sync dashboard's banners), and ends when the condition is gone. Starting and ending are
logged and audited; officers are emailed when an episode starts and when it ends, never on
every poll (`SyncAlert`, one open episode per kind). `piaotong sync_alerts` polls.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from piaotong.accounts.access import Actor
from piaotong.exchange.config import number
from piaotong.exchange.status import SyncSummary, sync_summary
from piaotong.ledger.actions import record_audit
from piaotong.support.access import officers_of
from piaotong.support.choices import AlertKind
from piaotong.support.models import SyncAlert

log = logging.getLogger(__name__)
SYSTEM = Actor()


@dataclass(frozen=True)
class Reading:
    """One alert condition as measured now."""

    kind: AlertKind
    value: float
    threshold: float
    detail: str

    @property
    def firing(self) -> bool:
        return self.value > self.threshold


def readings(summary: SyncSummary) -> list[Reading]:
    """The conditions of the dashboard's banners, with their values."""
    outbox_limit = number("PIAOTONG_OUTBOX_AGE_ALERT_SECONDS", 300)
    lag_limit = number("PIAOTONG_SYNC_LAG_ALERT_SECONDS", 60)
    age = summary.outbox_oldest_age_seconds or 0.0
    late = max(summary.peers, key=lambda p: p.last_lag_seconds or 0.0, default=None)
    lag = (late.last_lag_seconds or 0.0) if late else 0.0
    return [
        Reading(
            AlertKind.OUTBOX_AGE,
            age,
            outbox_limit,
            f"{summary.outbox_unpublished} events unpublished, the oldest for {age:.0f} s",
        ),
        Reading(
            AlertKind.SYNC_LAG,
            lag,
            lag_limit,
            f"the last event from {late.node_id if late else '-'} arrived {lag:.0f} s after "
            "it was committed",
        ),
    ]


def check_sync_alerts() -> list[SyncAlert]:
    """Open or close episodes for the current readings; the episodes that changed."""
    changed = []
    for reading in readings(sync_summary(settings.PIAOTONG_NODE_ID)):
        open_alert = SyncAlert.objects.filter(kind=reading.kind, closed_at=None).first()
        if reading.firing and open_alert is None:
            raised = do_raise_alert(reading)
            if raised is not None:
                changed.append(raised)
        elif not reading.firing and open_alert is not None:
            changed.append(do_close_alert(open_alert, reading))
    return changed


def do_raise_alert(reading: Reading) -> SyncAlert | None:
    """Start an episode (None if another poller started it first) and email the officers."""
    region = settings.PIAOTONG_REGION
    try:
        with transaction.atomic():
            alert = SyncAlert.objects.create(
                kind=reading.kind,
                region=region,
                detail=reading.detail,
                value_seconds=reading.value,
                threshold_seconds=reading.threshold,
                opened_at=timezone.now(),
            )
            record_audit(SYSTEM, "sync.alert_raised", f"alert:{alert.kind}", None, _details(alert))
    except IntegrityError:
        return None
    log.warning("sync alert %s at %s: %s", alert.kind, settings.PIAOTONG_NODE_ID, alert.detail)
    alert.notified = _email_officers(alert, raised=True)
    SyncAlert.objects.filter(pk=alert.pk).update(notified=alert.notified)
    return alert


def do_close_alert(alert: SyncAlert, reading: Reading) -> SyncAlert:
    with transaction.atomic():
        alert = SyncAlert.objects.select_for_update().get(pk=alert.pk)
        alert.closed_at = timezone.now()
        alert.save(update_fields=["closed_at"])
        details = _details(alert) | {"value_now": f"{reading.value:.1f}"}
        record_audit(SYSTEM, "sync.alert_cleared", f"alert:{alert.kind}", None, details)
    log.info("sync alert %s at %s cleared", alert.kind, settings.PIAOTONG_NODE_ID)
    _email_officers(alert, raised=False)
    return alert


def _details(alert: SyncAlert) -> dict[str, object]:
    return {
        "kind": alert.kind,
        "node": settings.PIAOTONG_NODE_ID,
        "value_seconds": f"{alert.value_seconds:.1f}",
        "threshold_seconds": f"{alert.threshold_seconds:.0f}",
    }


def _email_officers(alert: SyncAlert, raised: bool) -> int:
    recipients = sorted(
        {email for email in officers_of(alert.region).values_list("email", flat=True) if email}
    )
    if not recipients:
        return 0
    node = settings.PIAOTONG_NODE_ID
    label = AlertKind(alert.kind).label
    if raised:
        subject = f"同步告警 Sync alert at {node}: {label}"
        body = (
            f"节点 {node} 的同步超过阈值（{alert.threshold_seconds:.0f} 秒）：{alert.detail}。\n"
            f"The exchange at node {node} passed its threshold ({alert.threshold_seconds:.0f} s): "
            f"{alert.detail}.\nSee /sync/ for the details.\n"
        )
    else:
        subject = f"同步告警解除 Sync alert cleared at {node}: {label}"
        body = f"节点 {node} 的同步已恢复。The exchange at node {node} is back within bounds.\n"
    try:
        send_mail(subject, body, None, recipients, fail_silently=False)
    except (OSError, smtplib.SMTPException) as failure:
        log.warning("sync alert: could not email the officers: %s", failure)
        return 0
    return len(recipients)
