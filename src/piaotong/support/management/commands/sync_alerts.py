"""`piaotong sync_alerts [--every SECONDS]`: raise and clear sync alerts (once, or in a loop)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from piaotong.support.alerts import check_sync_alerts


class Command(BaseCommand):
    help = "Email the region's tax officers once when sync lag or outbox age passes a threshold."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every", type=float, default=0.0, help="poll every N seconds until SIGTERM"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        every: float = options["every"]
        stop = threading.Event()
        if every > 0:
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, lambda signum, frame: stop.set())
        while True:
            for alert in check_sync_alerts():
                state = "cleared" if alert.closed_at else "raised"
                self.stdout.write(f"{alert.kind} {state}: {alert.detail}")
            if every <= 0 or stop.wait(every):
                return
            close_old_connections()
