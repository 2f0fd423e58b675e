"""Support tickets (报修) opened from a trace, their comments, and sync alert episodes.

A ticket carries the trace's evidence as it was when the user opened it (a JSON snapshot), so
the tax officer who handles it sees what the user saw, whatever the exchange did since.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import Organisation, User
from piaotong.support.choices import AlertKind, TicketStatus


class Ticket(models.Model):
    """One request for help about an invoice that cannot be found.

    Invariants: `evidence` is the trace result (`TraceResult.as_json`) taken by the action that
    opened the ticket and never changes; `region` is the opening organisation's region, whose
    tax officers handle it; `resolved_at` is set exactly when the status is resolved;
    `unread_for_opener` is set when an officer writes and cleared when the opener reads it.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    opened_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    region = models.CharField(_("region"), max_length=2)
    invoice_number = models.CharField(_("invoice"), max_length=40, blank=True)
    traced_input = models.CharField(max_length=512, blank=True)
    verdict = models.CharField(_("verdict"), max_length=30)
    evidence = models.JSONField(default=dict)
    description = models.TextField(_("description"), blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=TicketStatus.choices, default=TicketStatus.OPEN
    )
    unread_for_opener = models.BooleanField(default=False)
    created_at = models.DateTimeField(_("opened at"), auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by_label = models.CharField(max_length=150, blank=True)
    resolution = models.TextField(_("resolution"), blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organisation", "-created_at"], name="ticket_org"),
            models.Index(fields=["region", "status"], name="ticket_region_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=TicketStatus.RESOLVED, resolved_at__isnull=False)
                | (~Q(status=TicketStatus.RESOLVED) & Q(resolved_at__isnull=True)),
                name="ticket_resolved_has_time",
            )
        ]
        verbose_name = _("support ticket")

    def __str__(self) -> str:
        return f"{self.uid} {self.verdict} {self.status}"

    @property
    def is_resolved(self) -> bool:
        return self.status == TicketStatus.RESOLVED

    @property
    def target(self) -> str:
        """The audit target of this ticket's steps."""
        return f"ticket:{self.uid}"


class TicketComment(models.Model):
    """A message on a ticket, by its opener or a handling tax officer. Never edited."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+", db_index=False)
    author_label = models.CharField(max_length=150)
    by_officer = models.BooleanField(default=False)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("ticket comment")

    def __str__(self) -> str:
        return f"{self.ticket_id}: {self.author_label}"


class SyncAlert(models.Model):
    """One episode of a sync alert (同步告警) at this node: raised when a threshold is passed,
    closed when the condition is gone. Tax officers are emailed once per episode.

    Invariants: at most one open episode (`closed_at` null) per kind (database constraint), so
    concurrent pollers raise it once; `notified` counts the officers emailed when it was raised.
    """

    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    region = models.CharField(max_length=2)
    detail = models.TextField()
    value_seconds = models.FloatField()
    threshold_seconds = models.FloatField()
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    notified = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"], condition=Q(closed_at__isnull=True), name="sync_alert_one_open"
            )
        ]
        verbose_name = _("sync alert")

    def __str__(self) -> str:
        return f"{self.kind} since {self.opened_at}"
