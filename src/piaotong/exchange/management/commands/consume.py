"""`piaotong consume`: apply other nodes' events from NATS JetStream until stopped."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from piaotong.exchange.consumer import Consumer, filter_subjects
from piaotong.exchange.management.commands._worker import link_for, stop_on_signals
from piaotong.exchange.reconcile_responder import start_in_worker


class Command(BaseCommand):
    help = "Apply events of other nodes from NATS JetStream (PIAOTONG_NATS_URL) until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--batch",
            type=int,
            default=1000,
            help="messages applied per transaction, at most (1000)",
        )
        parser.add_argument(
            "--linger",
            type=float,
            default=0.02,
            help="after the first message, seconds to wait for more of a batch (0.02)",
        )
        parser.add_argument("--stall-seconds", type=float, default=15.0)

    def handle(self, *args: Any, **options: Any) -> None:
        link = link_for("consumer")
        consumer = Consumer(
            link,
            batch=options["batch"],
            stall_seconds=options["stall_seconds"],
            linger=options["linger"],
        )
        stop_on_signals(consumer.stop)
        self.stdout.write(
            f"Consumer {consumer.durable} on {link.url}: {', '.join(filter_subjects(consumer.node))}"
        )
        start_in_worker(link, consumer.stop)  # reconciliation: responder and schedule
        try:
            consumer.run()
        finally:
            link.close()
