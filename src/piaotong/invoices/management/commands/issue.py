"""`piaotong issue --from-json FILE`: issue one invoice or a bulk batch from a JSON file.

The file holds either one invoice (the body of POST /api/v1/invoices) or
{"seller_tax_id": ..., "invoices": [...]} (the body of POST /api/v1/invoices/bulk).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser
from pydantic import ValidationError

from piaotong.accounts.access import Actor, actor_for_user, system_actor
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import BulkViolations, do_issue_invoices
from piaotong.invoices.schemas import BulkIn, InvoiceIn
from piaotong.lib.errors import RuleViolations


class Command(BaseCommand):
    help = "Issue invoices from a JSON file (one invoice, or a bulk batch), all or nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from-json", required=True, metavar="FILE", help="JSON file, or - for stdin"
        )
        parser.add_argument(
            "--seller", metavar="TAX_ID", help="Seller's USCC if the file does not name it"
        )
        parser.add_argument(
            "--user", metavar="USERNAME", help="Issue as this user (default: node operator)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch = self._read(options["from_json"])
        tax_id = options["seller"] or batch.seller_tax_id
        if not tax_id:
            raise CommandError("Name the seller: --seller TAX_ID or seller_tax_id in the file.")
        seller = Organisation.objects.filter(tax_id=tax_id.strip().upper()).first()
        if seller is None:
            raise CommandError(f"No organisation with tax id {tax_id} on this node.")
        actor = self._actor(options["user"], seller)
        try:
            invoices = do_issue_invoices(
                actor, seller, [item.to_draft() for item in batch.invoices]
            )
        except RuleViolations as many:
            raise CommandError(self._lines([(0, many.violations)])) from None
        except BulkViolations as bulk:
            raise CommandError(self._lines(sorted(bulk.items.items()))) from None
        for invoice in invoices:
            self.stdout.write(
                f"{invoice.number}\t{invoice.issue_date}\t{invoice.buyer_name}\t{invoice.total_with_tax}"
            )
        self.stdout.write(self.style.SUCCESS(f"Issued {len(invoices)} invoice(s)."))

    def _read(self, source: str) -> BulkIn:
        try:
            raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
            data = orjson.loads(raw)
            if isinstance(data, dict) and "invoices" in data:
                return BulkIn.model_validate(data)
            one = InvoiceIn.model_validate(data)
            return BulkIn(seller_tax_id=one.seller_tax_id, invoices=[one])
        except OSError as exc:
            raise CommandError(f"Cannot read {source}: {exc.strerror}") from None
        except orjson.JSONDecodeError as exc:
            raise CommandError(f"{source} is not valid JSON: {exc}") from None
        except ValidationError as exc:
            details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise CommandError(f"{source} does not match the invoice format: {details}") from None

    def _actor(self, username: str | None, seller: Organisation) -> Actor:
        if username is None:
            return system_actor([seller])
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return actor_for_user(user)

    @staticmethod
    def _lines(items: list[tuple[int, list[Any]]]) -> str:
        return "Nothing was issued:\n" + "\n".join(
            f"  invoice {index}: {v.field}: {v.text()}"
            for index, violations in items
            for v in violations
        )
