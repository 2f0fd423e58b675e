"""`piaotong filing reminders`: returns due and not yet submitted on this node.

    piaotong filing reminders [--today YYYY-MM-DD] [--json]

Lists every approved taxpayer of this node's region whose return for the last ended period is
not submitted, with its deadline (the 15th of the next month) and the days left (negative when
overdue). Exits 0; meant for cron and for the operator.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong.accounts.choices import OrganisationKind, OrganisationStatus
from piaotong.accounts.models import Organisation
from piaotong.filing.reminders import reminders


class Command(BaseCommand):
    help = "VAT return tasks: `reminders` lists returns due and not submitted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", choices=["reminders"])
        parser.add_argument("--today", help="the day to compute from (YYYY-MM-DD), default today")
        parser.add_argument("--json", action="store_true", help="one JSON object per line")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.utils import timezone

        try:
            today = (
                date.fromisoformat(options["today"]) if options["today"] else timezone.localdate()
            )
        except ValueError:
            raise CommandError("--today takes a date written YYYY-MM-DD, e.g. 2025-04-10") from None
        organisations = Organisation.objects.filter(
            kind=OrganisationKind.TAXPAYER,
            status=OrganisationStatus.APPROVED,
            region=settings.PIAOTONG_REGION,
        ).order_by("name")
        found = reminders(organisations, today)
        for reminder in found:
            if options["json"]:
                self.stdout.write(json.dumps(reminder.as_json(), ensure_ascii=False))
            else:
                state = "OVERDUE" if reminder.is_overdue else f"{reminder.days_left} days left"
                self.stdout.write(
                    f"{reminder.organisation.tax_id}  {reminder.organisation.name}  "
                    f"{reminder.period.code}  due {reminder.deadline.isoformat()}  {state}"
                )
        if not options["json"]:
            self.stdout.write(f"{len(found)} returns due and not submitted.")
