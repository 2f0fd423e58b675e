"""Tax periods (税款所属期) of deduction: one calendar month, written `YYYYMM`.

Pure helpers, no database. A period is *open* for selection from its first day until the buyer
confirms it (or files the return for it); a future period is never open. Invoices not selected
in a period stay selectable in a later one: there has been no 360-day certification deadline
since 2020 (china-einvoice.md §7, marked open there), so no deadline is enforced here.
"""

from __future__ import annotations

import re
from datetime import date

from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation

PERIOD = re.compile(r"(?P<year>\d{4})(?P<month>\d{2})")


def parse_period(text: str, field: str = "period") -> str:
    """The period `YYYYMM` named by `text`, or a RuleViolation saying how to write it.

    >>> parse_period(" 202503 ")
    '202503'
    >>> parse_period("2025-03")
    '202503'
    >>> parse_period("202513")
    Traceback (most recent call last):
    ...
    piaotong.lib.errors.RuleViolation: ...
    """
    cleaned = text.strip().replace("-", "")
    match = PERIOD.fullmatch(cleaned)
    if match is None or not 1 <= int(match["month"]) <= 12 or int(match["year"]) < 2000:
        raise RuleViolation(
            field,
            "bad_period",
            _("%(text)s is not a tax period: write the year and month as YYYYMM, e.g. 202503."),
            {"text": text},
        )
    return cleaned


def period_of(day: date) -> str:
    """The period a date falls in.

    >>> period_of(date(2025, 3, 31))
    '202503'
    """
    return f"{day.year:04d}{day.month:02d}"


def first_day(period: str) -> date:
    return date(int(period[:4]), int(period[4:]), 1)


def next_period(period: str) -> str:
    """
    >>> next_period("202512")
    '202601'
    """
    year, month = int(period[:4]), int(period[4:])
    return f"{year + month // 12:04d}{month % 12 + 1:02d}"


def previous_period(period: str) -> str:
    """
    >>> previous_period("202601")
    '202512'
    """
    year, month = int(period[:4]), int(period[4:])
    return f"{year - 1:04d}12" if month == 1 else f"{year:04d}{month - 1:02d}"


def end_day(period: str) -> date:
    """The first day after the period (exclusive upper bound)."""
    return first_day(next_period(period))


def check_not_future(period: str, today: date, field: str = "period") -> None:
    """A period that has not started yet cannot be selected into.

    >>> check_not_future("202503", date(2025, 3, 1))
    >>> check_not_future("202504", date(2025, 3, 31))
    Traceback (most recent call last):
    ...
    piaotong.lib.errors.RuleViolation: ...
    """
    if period > period_of(today):
        raise RuleViolation(
            field,
            "future_period",
            _(
                "Period %(period)s has not started yet; select into the current period "
                "%(current)s or an earlier one that is still open."
            ),
            {"period": period, "current": period_of(today)},
        )
