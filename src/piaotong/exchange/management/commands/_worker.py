"""Shared by the long-running exchange commands: the NATS link and SIGTERM handling."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from piaotong.exchange.natslink import NatsLink
from piaotong.exchange.relay import nats_url


def link_for(purpose: str) -> NatsLink:
    url = nats_url()
    if not url:
        raise CommandError(
            "PIAOTONG_NATS_URL is not set: this node runs alone. Set it to the NATS server of "
            "the exchange, e.g. nats://127.0.0.1:4222 (`piaotong cluster up` does it for you)."
        )
    return NatsLink(url, f"{settings.PIAOTONG_NODE_ID}-{purpose}")


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT finish the current cycle, then the loop ends."""

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
