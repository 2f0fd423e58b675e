"""Ticket statuses (报修工单状态) and the kinds of sync alert (同步告警)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class TicketStatus(models.TextChoices):
    """open -> answered (a tax officer replied) -> open (the user replied) ... -> resolved."""

    OPEN = "open", _("Open (待处理)")
    ANSWERED = "answered", _("Answered (已答复)")
    RESOLVED = "resolved", _("Resolved (已解决)")


class AlertKind(models.TextChoices):
    OUTBOX_AGE = "outbox_age", _("Events wait too long to be sent")
    SYNC_LAG = "sync_lag", _("Events from other nodes arrive too late")
