"""The exchange between nodes: outbox (发件箱), inbox (收件箱), parked (暂存) and quarantined
(隔离) events, and the node registry (节点注册表) with public keys.

Outbox rows are written in the same transaction as the fact they carry, so a fact is never committed
without its message and never published without being committed. A row points at its ledger
event rather than copying it: the message is built from the event when it is published, with
the event id as the NATS message id. Published rows are kept.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.exchange.choices import (
    NodeRole,
    ParkReason,
    QuarantineReason,
    WorkerState,
)
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


class Node(models.Model):
    """A node of the exchange as the hub's registry describes it (this node included).

    Invariants: `node_id` is unique; a node serves one region; the hub's registry is the
    source of truth on regional nodes (rows are replaced from it, never edited by hand).
    """

    node_id = models.CharField(_("node"), max_length=40, unique=True)
    role = models.CharField(_("role"), max_length=10, choices=NodeRole.choices)
    region = models.CharField(_("region"), max_length=2)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["region", "node_id"]
        verbose_name = _("node")

    def __str__(self) -> str:
        return f"{self.node_id} ({self.role} {self.region})"

    @property
    def is_hub(self) -> bool:
        return self.role == NodeRole.HUB


class NodeKey(models.Model):
    """A public signing key of a node. Invariants: `key_id` is derived from `public_key`
    (`lib.signing.key_id`) and unique; keys are retired, never deleted (old signatures stay
    verifiable)."""

    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="keys")
    key_id = models.CharField(max_length=32, unique=True)
    algorithm = models.CharField(max_length=20, default="Ed25519")
    public_key = models.BinaryField()
    is_active = models.BooleanField(default=True)
    registered_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.node.node_id}:{self.key_id}"


class RegistryState(models.Model):
    """The version of the node registry this node holds (one row).

    Invariant: `serial` only grows; on the hub it is bumped by every change, on a regional node
    it is the serial of the last registry message applied, signed by `hub_key_id`.
    """

    serial = models.PositiveBigIntegerField(default=0)
    hub_key_id = models.CharField(max_length=32, blank=True)
    published_serial = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"registry #{self.serial}"


class InboxEvent(models.Model):
    """One event from another node, applied here (收件箱).

    Invariants: `event_id` is unique, so an event is applied at most once however often it is
    delivered; the row is written in the same transaction as the rows the event applied.
    """

    event_id = models.UUIDField(unique=True)
    stream = models.CharField(max_length=80)
    writer = models.CharField(max_length=40)
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=60)
    schema_version = models.PositiveSmallIntegerField()
    subject = models.CharField(max_length=200)
    stream_seq = models.PositiveBigIntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField()
    applied_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["writer", "applied_at"], name="inbox_writer_applied"),
            models.Index(fields=["stream"], name="inbox_stream"),
        ]
        verbose_name = _("inbox event")

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq} {self.kind} from {self.writer}"

    @property
    def lag_seconds(self) -> float:
        """Commit at the writer to applied here."""
        return (self.applied_at - self.occurred_at).total_seconds()


class ParkedEvent(models.Model):
    """An event that arrived before it can be applied (暂存), kept until it can.

    Invariants: `event_id` is unique; the row is deleted in the transaction that applies the
    event (its inbox row then records it); `message` is the message as received.
    """

    event_id = models.UUIDField(unique=True)
    stream = models.CharField(max_length=80)
    writer = models.CharField(max_length=40)
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=60)
    subject = models.CharField(max_length=200)
    stream_seq = models.PositiveBigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=20, choices=ParkReason.choices)
    message = models.JSONField()
    parked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["stream", "writer", "seq"], name="parked_position")]
        verbose_name = _("parked event")

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq} ({self.reason})"


class QuarantinedEvent(models.Model):
    """A poison event (隔离): it cannot be applied as it is. Shown in the UI and the trace.

    Invariants: `raw` is the message exactly as received; `reason` is one of
    `QuarantineReason` and `detail` says what was wrong in words; an event id is quarantined at
    most once; `released_at` is set when an operator re-applied it successfully.
    """

    event_id = models.UUIDField(null=True, blank=True, unique=True)
    subject = models.CharField(max_length=200)
    stream = models.CharField(max_length=80, blank=True)
    writer = models.CharField(max_length=40, blank=True)
    seq = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=60, blank=True)
    schema = models.CharField(max_length=80, blank=True)
    schema_version = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=20, choices=QuarantineReason.choices)
    detail = models.TextField(_("detail"))
    raw = models.TextField()
    stream_seq = models.PositiveBigIntegerField(null=True, blank=True)
    quarantined_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-quarantined_at"]
        indexes = [models.Index(fields=["stream"], name="quarantine_stream")]
        verbose_name = _("quarantined event")

    def __str__(self) -> str:
        return f"{self.subject}: {self.reason}"


class WorkerStatus(models.Model):
    """The last reported state of a relay or consumer worker of this node (one row each).

    Invariant: `since` is when `state` last changed; `heartbeat_at` is the last report.
    """

    name = models.CharField(max_length=20, unique=True)
    state = models.CharField(max_length=20, choices=WorkerState.choices)
    detail = models.TextField(blank=True)
    since = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    pending = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"


class PeerStatus(models.Model):
    """What a peer node last said about its own outbox (its heartbeat, on core NATS).

    Invariant: one row per peer node id; values are the peer's own report at `reported_at`.
    """

    node_id = models.CharField(max_length=40, unique=True)
    region = models.CharField(max_length=2)
    role = models.CharField(max_length=10, choices=NodeRole.choices)
    unpublished = models.PositiveBigIntegerField(default=0)
    oldest_unpublished_at = models.DateTimeField(null=True, blank=True)
    relay_state = models.CharField(max_length=20, choices=WorkerState.choices)
    relay_since = models.DateTimeField(null=True, blank=True)
    reported_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.node_id}: {self.relay_state}"


class ReconciliationRun(models.Model):
    """One anti-entropy comparison (对账) of this node's invoices with a peer's (reconcile.py).

    Invariants: one row per run, written when the run ends (also when it failed, with `error`);
    the counts describe what was compared and repaired in this run only; `differences` lists
    at most `reconcile.MAX_LISTED` of them (number, side, kind, outcome).
    """

    class Trigger(models.TextChoices):
        SCHEDULED_RECENT = "recent", _("Scheduled: recent days")
        SCHEDULED_NIGHTLY = "nightly", _("Scheduled: nightly, older days")
        MANUAL = "manual", _("On demand")

    class Outcome(models.TextChoices):
        EQUAL = "equal", _("Equal")
        REPAIRED = "repaired", _("Differences repaired")
        UNREPAIRED = "unrepaired", _("Differences left")
        FAILED = "failed", _("Failed")

    peer = models.CharField(_("peer"), max_length=40)
    trigger = models.CharField(_("trigger"), max_length=10, choices=Trigger.choices)
    scope_region = models.CharField(max_length=2, blank=True)
    seller_region = models.CharField(max_length=2, blank=True)
    date_from = models.DateField()
    date_to = models.DateField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_seconds = models.FloatField(default=0.0)
    invoices_here = models.PositiveBigIntegerField(default=0)
    buckets_compared = models.PositiveIntegerField(default=0)
    buckets_differing = models.PositiveIntegerField(default=0)
    cells_differing = models.PositiveIntegerField(default=0)
    missing_here = models.PositiveIntegerField(default=0)
    missing_at_peer = models.PositiveIntegerField(default=0)
    stale_here = models.PositiveIntegerField(default=0)
    stale_at_peer = models.PositiveIntegerField(default=0)
    repaired_here = models.PositiveIntegerField(default=0)
    repaired_at_peer = models.PositiveIntegerField(default=0)
    unrepaired = models.PositiveIntegerField(default=0)
    outcome = models.CharField(_("outcome"), max_length=12, choices=Outcome.choices)
    error = models.TextField(blank=True)
    differences = models.JSONField(default=list)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["peer", "-started_at"], name="reconcile_peer_started")]
        verbose_name = _("reconciliation run")

    def __str__(self) -> str:
        return f"{self.peer} {self.date_from}..{self.date_to}: {self.outcome}"


class NodeRecovery(models.Model):
    """A node's recovery of its own events after a restore from an old backup (恢复后追回).

    A restored node has lost what it wrote after the backup, yet the hub holds it; until the
    node has it back it must not issue (its number sequence is behind) nor write facts about
    invoices whose later history it lacks (`recovery.py`).

    Invariants: one row per restore, written by the restore itself; at most one row is
    `recovering` at a time (a newer restore supersedes an older unfinished one); `since` is
    the time from which the hub is asked for events and never changes; `completed_at` is set
    once, when `state` leaves `recovering`.
    """

    class State(models.TextChoices):
        RECOVERING = "recovering", _("Recovering from the hub")
        COMPLETE = "complete", _("Recovered")
        NOT_NEEDED = "not_needed", _("Nothing to recover")
        ABANDONED = "abandoned", _("Abandoned by an operator")

    state = models.CharField(_("state"), max_length=12, choices=State.choices)
    archive = models.CharField(max_length=200, blank=True)
    backup_created_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField()
    since = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    progress = models.JSONField(default=dict)
    completed_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-restored_at", "-id"]
        verbose_name = _("node recovery")

    def __str__(self) -> str:
        return f"recovery after the restore of {self.restored_at:%Y-%m-%d %H:%M}: {self.state}"
