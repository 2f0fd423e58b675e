"""`piaotong audit verify`: recompute the audit chain only and name the first altered row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry


class Command(BaseCommand):
    help = "Audit log tools: `verify` recomputes the hash chain of the audit log."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        sub.add_parser(
            "verify", help="Recompute the chain; exit 1 naming the first altered or missing row"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        entries = AuditEntry.objects.order_by("seq")
        breach = verify_records(entries.iterator(chunk_size=2000), audit_body)
        if breach is not None:
            entry = AuditEntry.objects.get(pk=breach.record_id)
            raise CommandError(
                f"audit chain broken at seq {entry.seq} (row id {entry.pk}, {entry.action} "
                f"{entry.target}): {breach.reason}"
            )
        count = entries.count()
        self.stdout.write(self.style.SUCCESS(f"OK: {count} audit entries verified"))
