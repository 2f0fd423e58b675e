"""`piaotong deliver --retry`: send the invoice deliveries (交付) that are due.

Run it from cron or a timer every minute; with `--loop` it keeps running, checking every
`--interval` seconds, and stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.verification.delivery import process_due


class Command(BaseCommand):
    help = "Send due invoice deliveries (first attempts that failed, and retries)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--retry", action="store_true", help="Process deliveries whose next attempt is due."
        )
        parser.add_argument("--limit", type=int, default=100, help="At most this many per pass.")
        parser.add_argument("--loop", action="store_true", help="Keep running until stopped.")
        parser.add_argument("--interval", type=float, default=30.0, help="Seconds between passes.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["retry"]:
            raise CommandError("Say what to do: piaotong deliver --retry [--loop]")
        stopping = [False]

        def stop(*_: Any) -> None:
            stopping[0] = True

        signal.signal(signal.SIGTERM, stop)
        while True:
            sent, failed = process_due(limit=options["limit"])
            self.stdout.write(f"Deliveries: {sent} sent, {failed} failed (will retry or gave up).")
            if not options["loop"] or stopping[0]:
                return
            deadline = time.monotonic() + options["interval"]
            while time.monotonic() < deadline and not stopping[0]:
                time.sleep(0.2)
            if stopping[0]:
                return
