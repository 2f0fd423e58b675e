"""`piaotong relay`: publish this node's outbox to NATS JetStream until stopped."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from piaotong.exchange.management.commands._worker import link_for, stop_on_signals
from piaotong.exchange.relay import Relay


class Command(BaseCommand):
    help = "Publish the outbox to NATS JetStream (PIAOTONG_NATS_URL) until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=200)

    def handle(self, *args: Any, **options: Any) -> None:
        link = link_for("relay")
        relay = Relay(link, batch=options["batch"])
        stop_on_signals(relay.stop)
        self.stdout.write(f"Relay publishing to {link.url}")
        try:
            relay.run()
        finally:
            link.close()
