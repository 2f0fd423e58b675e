"""`piaotong sync status|retry-parked|release`: the state of the exchange at this node."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from piaotong.exchange.inbox import release_quarantined, retry_parked
from piaotong.exchange.models import QuarantinedEvent
from piaotong.exchange.nodes import this_node
from piaotong.exchange.status import SyncSummary, sync_summary


def _age(moment: Any) -> str:
    if moment is None:
        return "-"
    return f"{(timezone.now() - moment).total_seconds():.1f}s ago"


def summary_json(summary: SyncSummary) -> dict[str, Any]:
    def iso(moment: Any) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "node": this_node().__dict__,
        "outbox": {
            "unpublished": summary.outbox_unpublished,
            "published": summary.outbox_published,
            "oldest_unpublished_age_seconds": summary.outbox_oldest_age_seconds,
        },
        "inbox": summary.inbox,
        "parked": summary.parked,
        "quarantined": summary.quarantined,
        "consumer_pending": summary.consumer_pending,
        "workers": [
            {
                "name": w.name,
                "state": w.state,
                "since": iso(w.since),
                "detail": w.detail,
                "pending": w.pending,
                "heartbeat_at": iso(w.heartbeat_at),
            }
            for w in summary.workers
        ],
        "recovery": _recovery_json(summary),
        "peers": [
            {
                "node_id": p.node_id,
                "region": p.region,
                "role": p.role,
                "applied": p.applied,
                "last_applied_at": iso(p.last_applied_at),
                "last_lag_seconds": p.last_lag_seconds,
                "parked": p.parked,
                "quarantined": p.quarantined,
                "unpublished_at_peer": p.unpublished_at_peer,
                "peer_relay_state": p.peer_relay_state,
            }
            for p in summary.peers
        ],
    }


def _recovery_json(summary: SyncSummary) -> dict[str, Any] | None:
    r = summary.recovery
    if r is None:
        return None
    return {
        "state": r.state,
        "recovering": r.is_recovering,
        "backup_created_at": r.backup_created_at.isoformat() if r.backup_created_at else None,
        "restored_at": r.restored_at.isoformat(),
        "attempts": r.attempts,
        "last_attempt_at": r.last_attempt_at.isoformat() if r.last_attempt_at else None,
        "last_error": r.last_error,
        "completed_at": r.completed_at.isoformat() if r.completed_at else None,
        "progress": r.progress,
    }


def _recovery_line(summary: SyncSummary) -> str | None:
    r = summary.recovery
    if r is None:
        return None
    if r.is_recovering:
        error = f"; last attempt {_age(r.last_attempt_at)}: {r.last_error}" if r.last_error else ""
        return (
            f"RECOVERING since {timezone.localtime(r.restored_at):%Y-%m-%d %H:%M:%S} (restored "
            f"from a backup of {_local(r.backup_created_at)}): issuing is paused; "
            f"{r.attempts} attempts{error}"
        )
    return f"Last recovery after a restore: {r.state} {_local(r.completed_at)} {r.progress}"


def _local(moment: Any) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S}" if moment else "-"


class Command(BaseCommand):
    help = "Exchange status of this node; retry parked events; release a quarantined event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("what", choices=["status", "retry-parked", "release"])
        parser.add_argument("ids", nargs="*", type=int, help="quarantine row ids for release")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["what"] == "retry-parked":
            self.stdout.write(f"{retry_parked()} parked events applied")
            return
        if options["what"] == "release":
            if not options["ids"]:
                raise CommandError("name the quarantine row ids to release (see sync status)")
            for row in QuarantinedEvent.objects.filter(pk__in=options["ids"]):
                self.stdout.write(f"{row.pk}: {release_quarantined(row)}")
            return
        summary = sync_summary(this_node().node_id)
        if options["json"]:
            self.stdout.write(json.dumps(summary_json(summary)))
            return
        self._print(summary)

    def _print(self, s: SyncSummary) -> None:
        me = this_node()
        out = self.stdout.write
        out(f"Node {me.node_id} ({me.role}, region {me.region})")
        recovering = _recovery_line(s)
        if recovering:
            out(recovering)
        out(
            f"Outbox: {s.outbox_unpublished} unpublished (oldest {_age(s.outbox_oldest_at)}), "
            f"{s.outbox_published} published"
        )
        out(
            f"Inbox: {s.inbox} applied, {s.parked} parked, {s.quarantined} quarantined, "
            f"consumer pending {s.consumer_pending if s.consumer_pending is not None else '-'}"
        )
        for w in s.workers:
            out(f"  {w.name:9} {w.state:10} since {_age(w.since)} {w.detail[:80]}")
        out(
            f"{'peer':14} {'region':6} {'applied':>8} {'last lag':>9} {'parked':>7} "
            f"{'quarant.':>8} {'unpub@peer':>10} relay@peer"
        )
        for p in s.peers:
            lag = f"{p.last_lag_seconds:.3f}s" if p.last_lag_seconds is not None else "-"
            unpub = "-" if p.unpublished_at_peer is None else str(p.unpublished_at_peer)
            out(
                f"{p.node_id:14} {p.region:6} {p.applied:>8} {lag:>9} {p.parked:>7} "
                f"{p.quarantined:>8} {unpub:>10} {p.peer_relay_state or '-'}"
            )
