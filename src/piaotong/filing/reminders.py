"""Deadline reminders (申报期限提醒): whose return for the last ended period is not submitted yet.

The return of a period is due by the 15th of the next month (`periods.TaxPeriod.deadline`).
A small-scale taxpayer files quarterly when its latest return was for a quarter, else monthly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from piaotong.accounts.models import Organisation
from piaotong.filing.choices import ReturnStatus
from piaotong.filing.compute import SMALL_SCALE
from piaotong.filing.models import VatReturn
from piaotong.filing.periods import TaxPeriod, last_ended_period


@dataclass(frozen=True)
class Reminder:
    organisation: Organisation
    period: TaxPeriod
    deadline: date
    days_left: int

    @property
    def is_overdue(self) -> bool:
        return self.days_left < 0

    def as_json(self) -> dict[str, object]:
        return {
            "organisation": self.organisation.name,
            "tax_id": self.organisation.tax_id,
            "period": self.period.code,
            "deadline": self.deadline.isoformat(),
            "days_left": self.days_left,
            "overdue": self.is_overdue,
        }


def _quarterly(organisations: list[Organisation]) -> set[int]:
    small = [org.pk for org in organisations if org.taxpayer_kind == SMALL_SCALE]
    if not small:
        return set()
    latest: dict[int, str] = {}
    for org_id, period in (
        VatReturn.objects.filter(organisation_id__in=small)
        .order_by("organisation_id", "-prepared_at")
        .values_list("organisation_id", "period")
    ):
        latest.setdefault(org_id, period)
    return {org_id for org_id, period in latest.items() if "Q" in period}


def reminders(organisations: Iterable[Organisation], today: date) -> list[Reminder]:
    """Returns due and not yet submitted, for the last period that ended before `today`.

    Two or three queries whatever the number of organisations."""
    organisations = list(organisations)
    quarterly = _quarterly(organisations)
    due = {org.pk: last_ended_period(today, quarterly=org.pk in quarterly) for org in organisations}
    filed = set(
        VatReturn.objects.filter(
            organisation_id__in=due,
            period__in={p.code for p in due.values()},
            status=ReturnStatus.SUBMITTED,
        ).values_list("organisation_id", "period")
    )
    found = []
    for org in organisations:
        period = due[org.pk]
        if (org.pk, period.code) in filed:
            continue
        deadline = period.deadline()
        found.append(Reminder(org, period, deadline, (deadline - today).days))
    return sorted(found, key=lambda r: (r.deadline, r.organisation.name))
