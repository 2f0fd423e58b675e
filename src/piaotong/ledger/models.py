"""The tamper-evident ledger (防篡改台账): hash-chained invoice events and the audit chain.

Terms: a stream (事件流) is the history of one invoice; a writer (写入节点) is the node that
owns a fact about it; an event (事件) is one fact in the past tense (InvoiceIssued). An audit
entry (审计记录) records who did what, chained across the whole node.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _


class LedgerEvent(models.Model):
    """One event in one invoice's history.

    Invariants: (stream, writer, seq) is unique and seq has no gaps per (stream, writer);
    `hash` = SHA-256 over `prev_hash` and the canonical body (see `ledger.chain.event_body`);
    rows are never updated or deleted. An invoice's stream (`invoice:<uid>`) holds only events
    that nodes exchange: a local fact goes on a stream of its own (`documents:<uid>`), since
    peers would wait for its seq forever, and reconciliation takes a stream's head from the
    (stream, writer, seq) index alone, without reading the kind.
    """

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    stream = models.CharField(max_length=80)  # indexed by the (stream, writer, seq) constraint
    writer = models.CharField(max_length=40)
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=60)
    schema_version = models.PositiveSmallIntegerField(default=1)
    payload = models.JSONField()
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stream", "writer", "seq"], name="ledger_event_seq_unique"
            )
        ]
        ordering = ["id"]
        verbose_name = _("ledger event")

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq} {self.kind}"


class AuditEntry(models.Model):
    """Who did what, when (审计日志), chained across the node.

    Invariants: `seq` is gapless and unique across the node; `hash` chains to the previous entry;
    rows are never updated or deleted.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    actor = models.CharField(max_length=80)
    actor_label = models.CharField(max_length=150)
    organisation_id = models.BigIntegerField(null=True, db_index=True)
    action = models.CharField(max_length=60)
    target = models.CharField(max_length=120)
    details = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["seq"]
        verbose_name = _("audit entry")

    def __str__(self) -> str:
        return f"#{self.seq} {self.actor} {self.action} {self.target}"


class ChainHead(models.Model):
    """The tip of a node-wide chain, locked row-wise so appends are serialised and gapless."""

    name = models.CharField(max_length=40, unique=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.name}@{self.seq}"


class SigningKey(models.Model):
    """A public key of this node (the private half lives in PIAOTONG_KEY_DIR, never in the DB).

    Invariants: `key_id` is derived from `public_key`; at most one key per node is active.
    """

    key_id = models.CharField(max_length=32, unique=True)
    node_id = models.CharField(max_length=40)
    algorithm = models.CharField(max_length=20, default="Ed25519")
    public_key = models.BinaryField()
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.node_id}:{self.key_id}"
