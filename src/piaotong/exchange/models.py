"""The outbox (发件箱): events waiting to be published to other nodes.

Rows are written in the same transaction as the fact they carry, so a fact is never committed
without its message and never published without being committed. A row points at its ledger
event rather than copying it: the message is built from the event when it is published, with
the event id as the NATS message id. Published rows are kept.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.ledger.models import LedgerEvent


class OutboxEvent(models.Model):
    """One message to publish.

    Invariants: one row per ledger event (the receiver deduplicates on the event id);
    `published_at` and `stream_seq` are set together, once.
    """

    ledger_event = models.OneToOneField(
        LedgerEvent, on_delete=models.PROTECT, related_name="outbox"
    )
    subject = models.CharField(max_length=200)
    schema = models.CharField(max_length=80)
    schema_version = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
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
        return f"{self.subject} {self.ledger_event_id}"
