"""`piaotong redletter expire`: close red-letter requests unanswered for 72 hours (超时作废).

Safe to run as often as wanted (cron, the worker): a request expires once; later runs find
nothing more. `piaotong redletter list [--status S]` shows the requests on this node.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from piaotong.invoices.choices import RedLetterStatus
from piaotong.invoices.models import RedLetterConfirmation
from piaotong.invoices.redletter import expire_red_letter_requests


class Command(BaseCommand):
    help = "Red-letter confirmations: piaotong redletter expire | list [--status S]"

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        sub.add_parser("expire", help="Expire requests unanswered for 72 hours")
        ls = sub.add_parser("list", help="List red-letter confirmations, newest first")
        ls.add_argument("--status", choices=RedLetterStatus.values)
        ls.add_argument("--limit", type=int, default=50)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verb"] == "expire":
            count = expire_red_letter_requests()
            self.stdout.write(f"expired {count} red-letter request(s)")
            return
        rows = RedLetterConfirmation.objects.select_related("blue_invoice")
        if options["status"]:
            rows = rows.filter(status=options["status"])
        for row in rows[: options["limit"]]:
            self.stdout.write(
                f"{row.uid}  {row.blue_invoice.number}  {row.initiator_side:6}  {row.reason}  "
                f"{row.total_with_tax:>14}  {row.status}  {row.red_number or '-'}"
            )
