"""`piaotong cluster up|down|status|stop|start`: a hub and regional nodes on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.demo import DEMO_PASSWORD
from piaotong.exchange import cluster
from piaotong.lib.regions import get_region


def _regions(raw: str) -> list[str]:
    regions = [r.strip() for r in raw.split(",") if r.strip()]
    for region in regions:
        if get_region(region) is None:
            raise CommandError(f"{region!r} is not a region code; use two digits, e.g. 00,11,31")
    if len(set(regions)) != len(regions):
        raise CommandError("each region once")
    return regions


class Command(BaseCommand):
    help = "Run a local cluster: NATS JetStream, a hub (00) and regional nodes, one process each."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["up", "down", "status", "stop", "start"])
        parser.add_argument("--regions", default="00,11,31")
        parser.add_argument("--dir", default=str(Path.cwd() / "var" / "cluster"))
        parser.add_argument("--invoices-per-org", type=int, default=3)
        parser.add_argument("--base-port", type=int, default=8100,
                            help="web port of the first node; 0 picks free ports")  # fmt: skip
        parser.add_argument("--region", help="for stop/start: the node")
        parser.add_argument("--process", choices=cluster.PROCESSES, help="for stop/start")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        directory = Path(options["dir"]).resolve()
        action = options["action"]
        try:
            if action == "up":
                self._up(directory, options)
            elif action == "down":
                cluster.down(directory, say=self.stdout.write)
            elif action == "status":
                self._status(directory, options["json"])
            else:
                if not options["region"] or not options["process"]:
                    raise CommandError(f"cluster {action} needs --region and --process")
                do = cluster.stop_one if action == "stop" else cluster.start_one
                pid = do(directory, options["region"], options["process"])
                self.stdout.write(
                    f"node {options['region']} {options['process']}: {action} (pid {pid})"
                )
        except (RuntimeError, KeyError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc

    def _up(self, directory: Path, options: dict[str, Any]) -> None:
        cluster.up(
            directory,
            _regions(options["regions"]),
            invoices_per_org=options["invoices_per_org"],
            base_port=options["base_port"],
            say=self.stdout.write,
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Cluster up. Log in with the demo users (password {DEMO_PASSWORD})."
            )
        )
        self.stdout.write(f"State and logs: {directory}; stop with `piaotong cluster down`.")

    def _status(self, directory: Path, as_json: bool) -> None:
        report = cluster.status(directory)
        if as_json:
            self.stdout.write(json.dumps(report))
            return
        nats = report["nats"]
        self.stdout.write(
            f"NATS {nats['url']} pid {nats['pid']} {'up' if nats['alive'] else 'DOWN'}"
        )
        for node in report["nodes"]:
            procs = " ".join(
                f"{k}:{p['pid']}{'' if p['alive'] else '(dead)'}"
                for k, p in node["processes"].items()
            )
            self.stdout.write(
                f"{node['region']} {node['node_id']:8} {node['role']:8} {node['url']} {procs}"
            )
            sync = node["sync"]
            if not sync:
                self.stdout.write("   sync status unavailable")
                continue
            outbox = sync["outbox"]
            self.stdout.write(
                f"   outbox {outbox['unpublished']} unpublished / {outbox['published']} published; "
                f"inbox {sync['inbox']}, parked {sync['parked']}, quarantined {sync['quarantined']}, "
                f"consumer pending {sync['consumer_pending']}"
            )
            for peer in sync["peers"]:
                lag = peer["last_lag_seconds"]
                self.stdout.write(
                    f"   <- {peer['node_id']:8} applied {peer['applied']:>5}  last lag "
                    f"{'-' if lag is None else f'{lag:.3f}s'}  parked {peer['parked']}  "
                    f"quarantined {peer['quarantined']}"
                )
