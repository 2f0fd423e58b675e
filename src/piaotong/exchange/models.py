"""The outbox (发件箱): events waiting to be published to other nodes.

Rows are written in the same transaction as the fact they carry, so a fact is never committed
without its message and never published without being committed. The relay (exchange issue)
publishes them with the event id as the NATS message id; published rows are kept.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class OutboxEvent(models.Model):
    """One message to publish.

    Invariants: `event_id` equals the ledger event's id (so the receiver deduplicates on it);
    `published_at` and `stream_seq` are set together, once.
    """

    event_id = models.UUIDField(unique=True)
    subject = models.CharField(max_length=200)
    schema = models.CharField(max_length=80)
    schema_version = models.PositiveSmallIntegerField(default=1)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    stream_seq = models.PositiveBigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["id"],
                name="outbox_unpublished",
                condition=models.Q(published_at__isnull=True),
            )
        ]
        verbose_name = _("outbox event")

    def __str__(self) -> str:
        return f"{self.subject} {self.event_id}"
