"""`piaotong invoices list`: list invoices on this node, as a table or JSON lines."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.invoices.models import Invoice
from piaotong.invoices.queries import filter_invoices
from piaotong.invoices.schemas import invoice_summary


class Command(BaseCommand):
    help = (
        "List invoices: piaotong invoices list [--seller TAX_ID] [--status S] [--from D] [--to D]"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        ls = sub.add_parser("list", help="List invoices, newest first")
        ls.add_argument("--seller", metavar="TAX_ID")
        ls.add_argument("--buyer", metavar="NAME_OR_TAX_ID")
        ls.add_argument("--status")
        ls.add_argument("--from", dest="date_from", type=date.fromisoformat, metavar="YYYY-MM-DD")
        ls.add_argument("--to", dest="date_to", type=date.fromisoformat, metavar="YYYY-MM-DD")
        ls.add_argument("--limit", type=int, default=50)
        ls.add_argument("--json", action="store_true", help="One JSON object per line")

    def handle(self, *args: Any, **options: Any) -> None:
        invoices = Invoice.objects.all()
        if options["seller"]:
            invoices = invoices.filter(seller__tax_id=options["seller"].strip().upper())
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        invoices = filter_invoices(
            invoices,
            date_from=options["date_from"],
            date_to=options["date_to"],
            status=options["status"],
            buyer=options["buyer"],
        ).order_by("-issue_date", "-id")[: options["limit"]]
        for invoice in invoices:
            if options["json"]:
                self.stdout.write(orjson.dumps(invoice_summary(invoice)).decode())
            else:
                self.stdout.write(
                    f"{invoice.number or '(draft)':20}  {invoice.issue_date or '':10}  {invoice.status:22}  "
                    f"{invoice.total_with_tax:>14}  {invoice.seller_name} -> {invoice.buyer_name}"
                )
