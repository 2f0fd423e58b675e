"""`piaotong node`: this node's identity (id, role, region, signing key), registered locally."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from piaotong.exchange.nodes import do_register_this_node
from piaotong.ledger.keys import node_key


class Command(BaseCommand):
    help = "Show this node's identity and signing key id (creating the key on first use)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        me = do_register_this_node()
        key = node_key()
        data = {
            "node_id": me.node_id,
            "role": me.role,
            "region": me.region,
            "key_id": key.key_id,
            "algorithm": key.algorithm,
        }
        if options["json"]:
            self.stdout.write(json.dumps(data))
        else:
            for name, value in data.items():
                self.stdout.write(f"{name:10} {value}")
