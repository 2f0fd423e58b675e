"""`piaotong documents render | public-key`: render missing documents; print this node's key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from piaotong.documents.actions import missing_invoice_ids, render_documents
from piaotong.documents.keyfile import public_key_pem
from piaotong.ledger.keys import node_key


class Command(BaseCommand):
    help = "Documents: `render` renders every missing or failed document; `public-key` prints this node's key."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        render = sub.add_parser("render", help="render documents missing for issued invoices")
        render.add_argument("--limit", type=int, default=10_000)
        sub.add_parser("public-key", help="print this node's public key (PEM) for `verify --key`")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verb"] == "public-key":
            self.stdout.write(public_key_pem(node_key().public_key), ending="")
            return
        ids = missing_invoice_ids(options["limit"])
        failed = 0
        for index, pk in enumerate(ids, start=1):
            failed += len(render_documents([pk]))
            if index % 100 == 0 or index == len(ids):
                self.stdout.write(f"{index}/{len(ids)} invoices, {failed} failures")
        if not ids:
            self.stdout.write("every issued invoice has its documents")
