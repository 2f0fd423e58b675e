"""`piaotong reconcile`: compare this node's invoices with the hub (or, on the hub, with the
regional nodes) now, repair the differences, and record the run."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.exchange import reconcile
from piaotong.exchange.management.commands._worker import link_for
from piaotong.exchange.models import ReconciliationRun
from piaotong.exchange.reconcile_responder import reconcile_all


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-28") from None


class Command(BaseCommand):
    help = (
        "Reconcile (anti-entropy) with the hub, or on the hub with every regional node: compare "
        "digests per (seller region, issue date), repair what differs, record the run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--region", default="", help="only invoices of this seller region")
        parser.add_argument("--date", default="", help="only this issue date (YYYY-MM-DD)")
        parser.add_argument("--from", dest="date_from", default="", help="first issue date")
        parser.add_argument("--to", dest="date_to", default="", help="last issue date")
        parser.add_argument("--days", type=int, default=2, help="recent days (default 2)")
        parser.add_argument("--peer", default="", help="only this peer node id")
        parser.add_argument("--json", action="store_true", help="one JSON object per run")

    def _dates(self, options: dict[str, Any]) -> tuple[date, date]:
        if options["date"]:
            day = _date(options["date"])
            return day, day
        if options["date_from"] or options["date_to"]:
            first = _date(options["date_from"]) if options["date_from"] else date(2000, 1, 1)
            last = _date(options["date_to"]) if options["date_to"] else date.today()
            if first > last:
                raise CommandError("--from is after --to: swap them")
            return first, last
        recent = reconcile.recent_scope(options["days"], "")
        return recent.date_from, recent.date_to

    def handle(self, *args: Any, **options: Any) -> None:
        region = options["region"]
        if region and not (len(region) == 2 and region.isdigit()):
            raise CommandError(f"--region {region!r}: use the two-digit region code, e.g. 11")
        first, last = self._dates(options)
        link = link_for("reconcile")
        try:
            runs = reconcile_all(
                link,
                lambda scope_region: reconcile.Scope(first, last, scope_region, region),
                ReconciliationRun.Trigger.MANUAL,
                options["peer"],
            )
        finally:
            link.close()
        if not runs:
            raise CommandError(
                "No peer to reconcile with: the registry knows no hub (or, on the hub, no "
                "regional node) yet. Start the relay and consumer so nodes announce themselves."
            )
        for run in runs:
            self._show(run, options["json"])
        if any(r.outcome == ReconciliationRun.Outcome.FAILED for r in runs):
            raise CommandError("a run failed: see its error above")

    def _show(self, run: ReconciliationRun, as_json: bool) -> None:
        fields = {
            "peer": run.peer,
            "from": run.date_from.isoformat(),
            "to": run.date_to.isoformat(),
            "outcome": run.outcome,
            "invoices_here": run.invoices_here,
            "buckets_compared": run.buckets_compared,
            "buckets_differing": run.buckets_differing,
            "cells_differing": run.cells_differing,
            "missing_here": run.missing_here,
            "missing_at_peer": run.missing_at_peer,
            "stale_here": run.stale_here,
            "stale_at_peer": run.stale_at_peer,
            "repaired_here": run.repaired_here,
            "repaired_at_peer": run.repaired_at_peer,
            "unrepaired": run.unrepaired,
            "seconds": run.duration_seconds,
            "error": run.error,
        }
        if as_json:
            self.stdout.write(json.dumps(fields))
            return
        self.stdout.write(
            f"{run.peer} {fields['from']}..{fields['to']}: {run.outcome} in {run.duration_seconds} s; "
            f"{run.invoices_here} invoices here, {run.buckets_differing}/{run.buckets_compared} "
            f"buckets differ; missing here {run.missing_here}, at peer {run.missing_at_peer}, "
            f"stale here {run.stale_here}, at peer {run.stale_at_peer}; repaired here "
            f"{run.repaired_here}, at peer {run.repaired_at_peer}; left {run.unrepaired}"
            + (f"; error: {run.error}" if run.error else "")
        )
        for item in run.differences[:20]:
            mark = "repaired" if item["repaired"] else "LEFT"
            self.stdout.write(f"  {item['number']} {item['kind']} {mark}")
