"""`piaotong invoices list`: list invoices on this node, as a table or JSON lines.
`piaotong invoices export --output FILE`: the same selection as an Excel workbook (audited)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.accounts.access import Actor
from piaotong.invoices.actions import do_record_invoice_export
from piaotong.invoices.export import write_invoices_xlsx
from piaotong.invoices.models import Invoice, InvoiceQuerySet
from piaotong.invoices.queries import filter_invoices
from piaotong.invoices.schemas import invoice_summary


class Command(BaseCommand):
    help = (
        "List or export invoices: piaotong invoices list|export [--seller TAX_ID] [--status S] "
        "[--from D] [--to D]"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        ls = sub.add_parser("list", help="List invoices, newest first")
        ls.add_argument("--limit", type=int, default=50)
        ls.add_argument("--json", action="store_true", help="One JSON object per line")
        export = sub.add_parser("export", help="Write the invoices and their lines as .xlsx")
        export.add_argument("--output", required=True, type=Path, metavar="FILE")
        for command in (ls, export):
            command.add_argument("--seller", metavar="TAX_ID")
            command.add_argument("--buyer", metavar="NAME_OR_TAX_ID")
            command.add_argument("--status")
            command.add_argument(
                "--from", dest="date_from", type=date.fromisoformat, metavar="YYYY-MM-DD"
            )
            command.add_argument(
                "--to", dest="date_to", type=date.fromisoformat, metavar="YYYY-MM-DD"
            )

    def handle(self, *args: Any, **options: Any) -> None:
        invoices = Invoice.objects.all()
        if options["seller"]:
            invoices = invoices.filter(seller__tax_id=options["seller"].strip().upper())
        invoices = filter_invoices(
            invoices,
            date_from=options["date_from"],
            date_to=options["date_to"],
            status=options["status"],
            buyer=options["buyer"],
        )
        if options["verb"] == "export":
            self.export(invoices, options)
        else:
            self.list(invoices, options)

    def export(self, invoices: InvoiceQuerySet, options: dict[str, Any]) -> None:
        def progress(count: int) -> None:
            if count % 10_000 == 0:
                self.stderr.write(f"{count} invoices written")

        with options["output"].open("wb") as output:
            rows = write_invoices_xlsx(invoices, output, progress)
        filters = {
            name: str(options[name])
            for name in ("seller", "buyer", "status", "date_from", "date_to")
            if options[name]
        }
        organisations = list(invoices.values_list("seller_id", flat=True).distinct().order_by())
        do_record_invoice_export(Actor(), organisations, filters, rows)
        self.stdout.write(f"{rows} invoices exported to {options['output']}")

    def list(self, invoices: InvoiceQuerySet, options: dict[str, Any]) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        for invoice in invoices.order_by("-issue_date", "-id")[: options["limit"]]:
            if options["json"]:
                self.stdout.write(orjson.dumps(invoice_summary(invoice)).decode())
            else:
                self.stdout.write(
                    f"{invoice.number or '(draft)':20}  {invoice.issue_date or '':10}  {invoice.status:22}  "
                    f"{invoice.total_with_tax:>14}  {invoice.seller_name} -> {invoice.buyer_name}"
                )
