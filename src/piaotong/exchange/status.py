"""Worker and peer status rows: what the relay and consumer last reported, and the sync summary.

A worker reports at most every `REPORT_EVERY` seconds unless its state changed, so reporting
costs nothing measurable beside the work itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from piaotong.exchange.choices import WorkerState
from piaotong.exchange.models import (
    InboxEvent,
    Node,
    NodeRecovery,
    OutboxEvent,
    ParkedEvent,
    PeerStatus,
    QuarantinedEvent,
    WorkerStatus,
)

REPORT_EVERY = 5.0
# A worker that has not reported for this long is shown as stopped.
STALE_AFTER = timedelta(seconds=30)


class Reporter:
    """Writes a worker's state when it changes, and a heartbeat every few seconds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._last: tuple[str, str] | None = None
        self._last_at = float("-inf")

    def report(
        self,
        state: WorkerState,
        detail: str = "",
        pending: int | None = None,
        now: float = 0.0,
        force: bool = False,
    ) -> None:
        changed = self._last is None or self._last[0] != state
        if not (changed or force) and now - self._last_at < REPORT_EVERY:
            return
        moment = timezone.now()
        with transaction.atomic():
            row, _ = WorkerStatus.objects.select_for_update().get_or_create(
                name=self.name,
                defaults={"state": state, "since": moment, "heartbeat_at": moment},
            )
            if row.state != state:
                row.since = moment
            row.state, row.detail, row.heartbeat_at = state, detail[:2000], moment
            if pending is not None:
                row.pending = pending
            row.save()
        self._last, self._last_at = (state, detail), now


def outbox_backlog() -> tuple[int, datetime | None]:
    """(unpublished rows, creation time of the oldest)."""
    found = OutboxEvent.objects.filter(published_at__isnull=True).aggregate(
        n=Count("id"), oldest=Min("created_at")
    )
    return int(found["n"]), found["oldest"]


def record_peer_heartbeat(report: dict[str, Any]) -> None:
    """Store a peer's heartbeat (its own outbox and relay state)."""
    PeerStatus.objects.update_or_create(
        node_id=str(report["node_id"])[:40],
        defaults={
            "region": str(report.get("region", ""))[:2],
            "role": str(report.get("role", ""))[:10],
            "unpublished": int(report.get("unpublished", 0)),
            "oldest_unpublished_at": _time(report.get("oldest_unpublished_at")),
            "relay_state": str(report.get("relay_state", ""))[:20],
            "relay_since": _time(report.get("relay_since")),
            "reported_at": timezone.now(),
        },
    )


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class PeerLag:
    node_id: str
    region: str
    role: str
    applied: int
    last_applied_at: datetime | None
    last_lag_seconds: float | None
    parked: int
    quarantined: int
    unpublished_at_peer: int | None
    oldest_unpublished_at_peer: datetime | None
    peer_relay_state: str
    peer_reported_at: datetime | None


@dataclass(frozen=True)
class WorkerView:
    name: str
    state: str
    detail: str
    since: datetime | None
    heartbeat_at: datetime | None
    pending: int | None


@dataclass(frozen=True)
class RecoveryView:
    """A recovery after a restore that is under way (issuing paused), or the last one."""

    state: str
    state_label: str
    backup_created_at: datetime | None
    restored_at: datetime
    attempts: int
    last_attempt_at: datetime | None
    last_error: str
    completed_at: datetime | None
    progress: dict[str, Any]

    @property
    def is_recovering(self) -> bool:
        return self.state == NodeRecovery.State.RECOVERING


def recovery_view() -> RecoveryView | None:
    row = NodeRecovery.objects.first()
    if row is None:
        return None
    return RecoveryView(
        row.state,
        str(row.get_state_display()),
        row.backup_created_at,
        row.restored_at,
        row.attempts,
        row.last_attempt_at,
        row.last_error,
        row.completed_at,
        dict(row.progress or {}),
    )


@dataclass(frozen=True)
class SyncSummary:
    outbox_unpublished: int
    outbox_oldest_at: datetime | None
    outbox_published: int
    parked: int
    quarantined: int
    inbox: int
    workers: list[WorkerView]
    peers: list[PeerLag]
    recovery: RecoveryView | None = None

    @property
    def outbox_oldest_age_seconds(self) -> float | None:
        if self.outbox_oldest_at is None:
            return None
        return (timezone.now() - self.outbox_oldest_at).total_seconds()

    @property
    def consumer_pending(self) -> int | None:
        consumer = next((w for w in self.workers if w.name == "consumer"), None)
        return consumer.pending if consumer else None


def _worker(name: str) -> WorkerView:
    row = WorkerStatus.objects.filter(name=name).first()
    if row is None:
        return WorkerView(name, WorkerState.STOPPED, "never started", None, None, None)
    state = row.state
    if timezone.now() - row.heartbeat_at > STALE_AFTER:
        state = WorkerState.STOPPED
    return WorkerView(name, state, row.detail, row.since, row.heartbeat_at, row.pending)


def sync_summary(self_node_id: str) -> SyncSummary:
    """Everything the dashboard, `sync status` and /metrics show, in a fixed number of queries."""
    unpublished, oldest = outbox_backlog()
    applied = {
        r["writer"]: r
        for r in InboxEvent.objects.values("writer").annotate(n=Count("id"), last=Max("applied_at"))
    }
    parked = dict(ParkedEvent.objects.values_list("writer").annotate(n=Count("id")))
    quarantined = dict(
        QuarantinedEvent.objects.filter(released_at__isnull=True)
        .values_list("writer")
        .annotate(n=Count("id"))
    )
    heartbeats = {p.node_id: p for p in PeerStatus.objects.all()}
    nodes = {n.node_id: n for n in Node.objects.exclude(node_id=self_node_id)}
    peer_ids = sorted((set(nodes) | set(applied) | set(parked) | set(heartbeats)) - {self_node_id})
    last_lags = _last_lags([dict(row) for row in applied.values()])
    peers = []
    for peer in peer_ids:
        node, beat, got = nodes.get(peer), heartbeats.get(peer), applied.get(peer)
        peers.append(
            PeerLag(
                node_id=peer,
                region=node.region if node else (beat.region if beat else ""),
                role=node.role if node else (beat.role if beat else ""),
                applied=got["n"] if got else 0,
                last_applied_at=got["last"] if got else None,
                last_lag_seconds=last_lags.get(peer),
                parked=parked.get(peer, 0),
                quarantined=quarantined.get(peer, 0),
                unpublished_at_peer=beat.unpublished if beat else None,
                oldest_unpublished_at_peer=beat.oldest_unpublished_at if beat else None,
                peer_relay_state=beat.relay_state if beat else "",
                peer_reported_at=beat.reported_at if beat else None,
            )
        )
    return SyncSummary(
        outbox_unpublished=unpublished,
        outbox_oldest_at=oldest,
        outbox_published=OutboxEvent.objects.filter(published_at__isnull=False).count(),
        parked=sum(parked.values()),
        quarantined=QuarantinedEvent.objects.filter(released_at__isnull=True).count(),
        inbox=sum(r["n"] for r in applied.values()),
        workers=[_worker("relay"), _worker("consumer")],
        peers=peers,
        recovery=recovery_view(),
    )


def _last_lags(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per writer: commit-to-apply seconds of its most recently applied event."""
    lags = {}
    for row in rows:
        last = (
            InboxEvent.objects.filter(writer=row["writer"], applied_at=row["last"])
            .values_list("occurred_at", "applied_at")
            .first()
        )
        if last:
            lags[row["writer"]] = max(0.0, (last[1] - last[0]).total_seconds())
    return lags
