"""Node roles, fact sides, and the reasons an event is parked (暂存) or quarantined (隔离)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class NodeRole(models.TextChoices):
    HUB = "hub", _("Hub (national platform)")
    REGIONAL = "regional", _("Regional node")


class FactSide(models.TextChoices):
    """Whose fact an event states, which decides its one rightful writer (ARCHITECTURE §5)."""

    SELLER = "seller", _("Seller side: the seller's home node")
    BUYER = "buyer", _("Buyer side: the buyer's node")
    AUTHORITY = "authority", _("Authority: the hub")


class ParkReason(models.TextChoices):
    """An event that is fine but cannot be applied yet; it is applied when the cause is gone."""

    GAP = "gap", _("Waiting for an earlier event of the same invoice")
    AWAITING_KEY = "awaiting_key", _("Waiting for the writer's public key from the hub")


class QuarantineReason(models.TextChoices):
    """A poison event: it will never apply as it is. Kept with its reason, never dropped."""

    MALFORMED = "malformed", _("Not a readable message")
    UNKNOWN_SCHEMA = "unknown_schema", _("Unknown message schema")
    NEWER_SCHEMA = "newer_schema", _("Schema version newer than this node understands")
    BAD_HASH = "bad_hash", _("Content does not match its hash")
    BROKEN_PREV_HASH = "broken_prev_hash", _("Does not link to the previous event")
    BAD_SIGNATURE = "bad_signature", _("Signature does not verify")
    WRONG_WRITER = "wrong_writer", _("Written by a node that does not own this fact")
    CONFLICT = "conflict", _("Conflicts with an event or invoice already here")
    INVALID_CONTENT = "invalid_content", _("Content this node cannot store")


class WorkerState(models.TextChoices):
    RUNNING = "running", _("Running")
    NATS_DOWN = "nats_down", _("NATS unreachable")
    STALLED = "stalled", _("Stalled")
    STOPPED = "stopped", _("Stopped")
