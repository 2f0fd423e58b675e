"""`piaotong ledger verify`: recompute every hash chain and name the first altered row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger


class Command(BaseCommand):
    help = "Ledger tools: `verify` recomputes all invoice chains and the audit chain."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        sub.add_parser(
            "verify", help="Recompute every chain; exit 1 on the first altered row of each"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        findings = list(verify_ledger())
        for finding in findings:
            self.stderr.write(
                f"BROKEN {finding.chain}: row id {finding.breach.record_id} "
                f"(position {finding.breach.position}): {finding.breach.reason}"
            )
        if findings:
            raise CommandError(f"{len(findings)} chain(s) altered")
        self.stdout.write(
            self.style.SUCCESS(
                f"OK: {LedgerEvent.objects.count()} ledger events, {AuditEntry.objects.count()} audit entries verified"
            )
        )
