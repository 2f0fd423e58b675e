"""`piaotong recover`: recover this node's own events from the hub after a restore (追回).

The consumer does the same by itself when it starts on a restored node; this runs it now, with
progress and a summary. Exit status 1 while the node is still recovering (hub unreachable, the
hub behind, events that cannot apply yet): issuing stays paused.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from piaotong.exchange import recovery
from piaotong.exchange.management.commands._worker import link_for
from piaotong.exchange.models import NodeRecovery
from piaotong.exchange.reconcile_responder import reconcile_after_recovery


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


class Command(BaseCommand):
    help = (
        "Recover this node's own events (invoices, voids, red-letter steps, buyer-side facts) "
        "and the events it had applied from the hub after a restore from a backup; issuing "
        "resumes when it completes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="seconds to wait for the hub to catch up with the stream (60)",
        )
        parser.add_argument(
            "--no-reconcile",
            action="store_true",
            help="skip the reconciliation with the hub after recovery",
        )
        parser.add_argument(
            "--since",
            help="start a recovery by hand: events from this ISO "
            "time (a database restored by other means)",
        )
        parser.add_argument(
            "--abandon",
            metavar="REASON",
            help="end the recovery unfinished and resume issuing (audited)",
        )
        parser.add_argument("--json", action="store_true", help="the summary as one JSON line")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["abandon"]:
            self._abandon(options["abandon"])
            return
        if options["since"]:
            self._begin(options["since"])
        row = recovery.active_recovery()
        if row is None:
            self._not_recovering(options["json"])
            return
        say = (lambda _: None) if options["json"] else self.stdout.write
        say(
            f"Recovering since {_when(row.restored_at)}: backup of {_when(row.backup_created_at)}, "
            f"asking the hub for events from {_when(row.since)}"
        )
        link = link_for("recover")
        try:
            result = recovery.recover_over_nats(link, options["timeout"], say=say)
            runs = []
            if result.complete and not options["no_reconcile"] and result.recovery:
                say("Reconciling with the hub over the days since the backup")
                runs = reconcile_after_recovery(link, timezone.localdate(result.recovery.since))
        finally:
            link.close()
        self._summary(result, runs, options["json"])

    def _abandon(self, reason: str) -> None:
        row = recovery.do_abandon_recovery(reason)
        if row is None:
            raise CommandError("this node is not recovering: nothing to abandon")
        self.stdout.write(
            self.style.WARNING(
                "Recovery abandoned: issuing resumes. Invoices this node issued after the backup "
                "that were not recovered may now be numbered twice."
            )
        )

    def _begin(self, raw: str) -> None:
        try:
            since = datetime.fromisoformat(raw)
        except ValueError:
            raise CommandError(f"--since {raw!r}: use an ISO time, e.g. 2026-11-28T09:00") from None
        if timezone.is_naive(since):
            since = timezone.make_aware(since)
        recovery.do_begin_recovery(since, note="started with piaotong recover --since")

    def _not_recovering(self, as_json: bool) -> None:
        last = recovery.latest_recovery()
        if as_json:
            self.stdout.write(json.dumps({"recovering": False, **_row(last)}))
            return
        self.stdout.write("This node is not recovering.")
        if last is not None:
            self.stdout.write(
                f"The last recovery (restore of {_when(last.restored_at)}) is "
                f"{last.get_state_display()} since {_when(last.completed_at)}: {last.progress}"
            )

    def _summary(self, result: recovery.Result, runs: list[Any], as_json: bool) -> None:
        data = {
            "recovering": not result.complete,
            **_row(result.recovery),
            "this_attempt": result.counts,
            "error": result.error,
            "waiting": list(result.left),
            "reconciliation": [
                {"peer": r.peer, "outcome": r.outcome, "repaired_here": r.repaired_here}
                for r in runs
            ],
        }
        if as_json:
            self.stdout.write(json.dumps(data))
        else:
            counts = result.counts
            self.stdout.write(
                f"This attempt: {counts.get('invoices_recovered', 0)} invoices and "
                f"{counts.get('own_applied', 0)} events of this node recovered "
                f"({counts.get('own_held', 0)} were here), {counts.get('foreign_applied', 0)} "
                f"events of other nodes applied ({counts.get('foreign_duplicate', 0)} were here), "
                f"{counts.get('released', 0)} quarantined events released"
            )
            for run in runs:
                self.stdout.write(
                    f"Reconciliation with {run.peer}: {run.outcome}, "
                    f"{run.repaired_here} repaired here"
                )
            for line in result.left:
                self.stderr.write(f"WAITING {line}")
        if not result.complete:
            raise CommandError(
                f"still recovering, issuing stays paused: {result.error}. The consumer retries "
                "by itself; run `piaotong recover` again once the cause is fixed."
            )
        if not as_json:
            self.stdout.write(self.style.SUCCESS("Recovery complete: issuing resumes."))


def _row(row: NodeRecovery | None) -> dict[str, Any]:
    if row is None:
        return {"state": None}
    return {
        "state": row.state,
        "backup_created_at": row.backup_created_at.isoformat() if row.backup_created_at else None,
        "restored_at": row.restored_at.isoformat(),
        "since": row.since.isoformat(),
        "attempts": row.attempts,
        "completed_at": row.completed_at.isoformat() if row.completed_at else None,
        "progress": row.progress,
        "last_error": row.last_error,
    }
