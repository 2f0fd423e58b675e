"""`piaotong reconcile-import FILE --org TAX_ID`: import purchase records or a supplier list and
reconcile them with the organisation's received invoices, in this process, with progress.

`piaotong reconcile-import --resume` runs every queued import and restarts stalled ones.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from piaotong.accounts.access import system_actor
from piaotong.accounts.models import Organisation
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.reconciliation.actions import (
    ImportOptions,
    do_create_import_job,
    do_resume_stale_import,
    do_run_import,
)
from piaotong.reconciliation.choices import ImportKind, JobStatus
from piaotong.reconciliation.models import ImportJob


class Command(BaseCommand):
    help = "Import purchase records or a supplier list (.xlsx or CSV) and reconcile them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", type=Path)
        parser.add_argument("--org", metavar="TAX_ID", help="the buyer organisation's tax id")
        parser.add_argument(
            "--kind", choices=ImportKind.values, default=ImportKind.PURCHASE_RECORDS
        )
        parser.add_argument("--seller-tax-id", default="", help="for lists without a seller column")
        parser.add_argument("--date-window", type=int, default=10, metavar="DAYS")
        parser.add_argument("--per-line", type=Decimal, default=Decimal("0.01"))
        parser.add_argument("--per-invoice", type=Decimal, default=Decimal("1.27"))
        parser.add_argument("--resume", action="store_true", help="run queued and stalled imports")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["resume"]:
            self.resume()
            return
        if not options["file"] or not options["org"]:
            raise CommandError("Give a FILE and --org TAX_ID (or --resume).")
        organisation = Organisation.objects.filter(tax_id=options["org"].strip().upper()).first()
        if organisation is None:
            raise CommandError(f"No organisation with tax id {options['org']} on this node.")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        job_options = ImportOptions(
            kind=options["kind"],
            default_seller_tax_id=options["seller_tax_id"],
            date_window_days=options["date_window"],
            per_line_tolerance=options["per_line"],
            per_invoice_tolerance=options["per_invoice"],
        )
        try:
            with path.open("rb") as source:
                job, _ = do_create_import_job(
                    system_actor([organisation]), organisation, source, path.name, job_options
                )
        except (RuleViolation, RuleViolations) as error:
            raise CommandError(str(error)) from None
        self.run(job)

    def run(self, job: ImportJob) -> None:
        self.stderr.write(f"import {job.uid}: {job.file_name}")
        finished = do_run_import(job.pk)
        if finished is None:
            self.stderr.write(f"import {job.uid} is being run elsewhere")
            return
        self.report(finished)

    def report(self, job: ImportJob) -> None:
        for note in job.note_messages():
            self.stdout.write(note)
        if job.status == JobStatus.FAILED:
            for issue in job.issues.all()[:200]:
                self.stdout.write(f"{issue.location()}: {issue.message()}")
            raise CommandError(
                f"import refused: {job.error_count} problems, nothing imported ({job.uid})"
            )
        counts = ", ".join(f"{status}={count}" for status, count in sorted(job.summary.items()))
        self.stdout.write(f"{job.rows_read} rows imported and reconciled: {counts} ({job.uid})")

    def resume(self) -> None:
        stalled = ImportJob.objects.filter(
            Q(status__in=[JobStatus.READING, JobStatus.MATCHING, JobStatus.STORING])
        )
        for job in stalled:
            do_resume_stale_import(job)
        for job in ImportJob.objects.filter(status=JobStatus.QUEUED).order_by("created_at"):
            self.run(job)
