"""Reading the audit log (审计日志) for auditors: scoping, filters, export rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from piaotong.accounts.access import Actor
from piaotong.accounts.permissions import Action
from piaotong.ledger.models import AuditEntry

EXPORT_HEADER = [
    "seq",
    "occurred_at",
    "actor",
    "actor_label",
    "organisation_id",
    "action",
    "target",
    "details",
    "hash",
]


def visible_audit_entries(actor: Actor) -> QuerySet[AuditEntry]:
    """Entries about the organisations where the actor may read the audit log."""
    return AuditEntry.objects.filter(
        organisation_id__in=actor.organisation_ids(Action.VIEW_AUDIT_LOG)
    )


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def filter_audit_entries(
    entries: QuerySet[AuditEntry],
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    action: str = "",
    actor: str = "",
    target: str = "",
) -> QuerySet[AuditEntry]:
    if date_from:
        entries = entries.filter(occurred_at__gte=_start_of(date_from))
    if date_to:
        entries = entries.filter(occurred_at__lt=_start_of(date_to + timedelta(days=1)))
    if action:
        entries = entries.filter(action__startswith=action.strip())
    if actor:
        entries = entries.filter(actor_label__icontains=actor.strip())
    if target:
        entries = entries.filter(target__icontains=target.strip())
    return entries


def export_rows(entries: QuerySet[AuditEntry]) -> Iterator[list[Any]]:
    """Rows for the CSV export, read in chunks so memory stays flat on long logs."""
    for entry in entries.order_by("seq").iterator(chunk_size=2000):
        yield [
            entry.seq,
            timezone.localtime(entry.occurred_at).isoformat(),
            entry.actor,
            entry.actor_label,
            entry.organisation_id,
            entry.action,
            entry.target,
            entry.details,
            entry.hash,
        ]
