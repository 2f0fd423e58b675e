"""Prometheus metrics of the exchange, computed from the sync summary at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from piaotong.exchange.nodes import this_node
from piaotong.exchange.status import sync_summary


def metrics_text() -> tuple[bytes, str]:
    me = this_node()
    summary = sync_summary(me.node_id)
    registry = CollectorRegistry()

    def gauge(
        name: str, doc: str, value: float | None, labels: dict[str, str] | None = None
    ) -> None:
        if value is None:
            return
        metric = Gauge(name, doc, list(labels or {}), registry=registry)
        (metric.labels(**labels) if labels else metric).set(value)

    gauge(
        "piaotong_outbox_unpublished", "Outbox rows not yet published", summary.outbox_unpublished
    )
    gauge("piaotong_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished outbox row",
          summary.outbox_oldest_age_seconds or 0.0)  # fmt: skip
    gauge("piaotong_inbox_applied", "Events of other nodes applied here", summary.inbox)
    gauge("piaotong_parked_events", "Events waiting for a predecessor or a key", summary.parked)
    gauge("piaotong_quarantined_events", "Poison events kept with a reason", summary.quarantined)
    gauge(
        "piaotong_consumer_pending",
        "Messages for this node not yet applied",
        summary.consumer_pending,
    )
    up = Gauge(
        "piaotong_worker_running", "1 if the worker reports running", ["worker"], registry=registry
    )
    for worker in summary.workers:
        up.labels(worker=worker.name).set(1 if worker.state == "running" else 0)
    applied = Gauge(
        "piaotong_peer_applied_events",
        "Events applied per writer node",
        ["peer"],
        registry=registry,
    )
    lag = Gauge("piaotong_peer_last_lag_seconds", "Commit-to-apply time of the last event per peer",
                ["peer"], registry=registry)  # fmt: skip
    for peer in summary.peers:
        applied.labels(peer=peer.node_id).set(peer.applied)
        if peer.last_lag_seconds is not None:
            lag.labels(peer=peer.node_id).set(peer.last_lag_seconds)
    return generate_latest(registry), CONTENT_TYPE_LATEST
