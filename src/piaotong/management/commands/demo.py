"""`piaotong demo`: load idempotent demo data on this node."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from piaotong.demo import DEMO_PASSWORD, USERS, load_demo


class Command(BaseCommand):
    help = "Load demo organisations, users for every role and a few hundred invoices (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--invoices-per-org", type=int, default=80)

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        counts = load_demo(options["invoices_per_org"], progress=self.stdout.write)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready: {counts['organisations']} organisations, {counts['users']} users, "
                f"{counts['invoices_issued']} invoices issued now."
            )
        )
        self.stdout.write(
            f"Log in as any of: {', '.join(u[0] for u in USERS)} — password {DEMO_PASSWORD}"
        )
