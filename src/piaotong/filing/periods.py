"""Tax periods of the VAT return (增值税申报所属期) and their deadlines. Pure, no database.

A general taxpayer (一般纳税人) files monthly: period `YYYYMM`. A small-scale taxpayer (小规模纳税人)
files monthly or quarterly: `YYYYMM` or `YYYYQ1`..`YYYYQ4`. The return is due by the 15th of the
month after the period (china-einvoice.md §8). Holiday extensions (顺延) are announced each
year by the State Taxation Administration: they are data in `DEADLINE_EXTENSIONS`, keyed by the
(year, month) of the deadline, holding the extended day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation

PATTERN = re.compile(r"(?P<year>\d{4})(?:(?P<month>\d{2})|Q(?P<quarter>[1-4]))")
DEADLINE_DAY = 15
# (year, month of the deadline) -> extended day of that month. Empty: no extension is assumed.
DEADLINE_EXTENSIONS: dict[tuple[int, int], int] = {}


@dataclass(frozen=True, order=True)
class TaxPeriod:
    """A month or a quarter. `code` is how it is written: 202503 or 2025Q1."""

    year: int
    first_month: int
    months: int

    @property
    def code(self) -> str:
        if self.months == 3:
            return f"{self.year:04d}Q{(self.first_month - 1) // 3 + 1}"
        return f"{self.year:04d}{self.first_month:02d}"

    @property
    def is_quarter(self) -> bool:
        return self.months == 3

    @property
    def start(self) -> date:
        return date(self.year, self.first_month, 1)

    @property
    def end(self) -> date:
        """The first day after the period (exclusive bound)."""
        month = self.first_month + self.months
        return date(self.year + (month - 1) // 12, (month - 1) % 12 + 1, 1)

    @property
    def month_codes(self) -> list[str]:
        return [
            f"{self.year:04d}{m:02d}"
            for m in range(self.first_month, self.first_month + self.months)
        ]

    def previous(self) -> TaxPeriod:
        """The period before, of the same length.

        >>> parse_tax_period("202501").previous().code, parse_tax_period("2025Q1").previous().code
        ('202412', '2024Q4')
        """
        month = self.first_month - self.months
        if month < 1:
            return TaxPeriod(self.year - 1, month + 12, self.months)
        return TaxPeriod(self.year, month, self.months)

    def deadline(self) -> date:
        """The 15th of the month after the period, or the announced extension.

        >>> parse_tax_period("202512").deadline(), parse_tax_period("2025Q3").deadline()
        (datetime.date(2026, 1, 15), datetime.date(2025, 10, 15))
        """
        after = self.end
        day = DEADLINE_EXTENSIONS.get((after.year, after.month), DEADLINE_DAY)
        return after.replace(day=day)

    def has_ended(self, today: date) -> bool:
        return today >= self.end


def parse_tax_period(text: str, field: str = "period") -> TaxPeriod:
    """
    >>> parse_tax_period("2025-03").code, parse_tax_period("2025q2").months
    ('202503', 3)
    """
    cleaned = text.strip().upper().replace("-", "")
    match = PATTERN.fullmatch(cleaned)
    month = int(match["month"]) if match and match["month"] else 0
    if match is None or int(match["year"]) < 2000 or (match["month"] and not 1 <= month <= 12):
        raise RuleViolation(
            field,
            "bad_period",
            _(
                "%(text)s is not a tax period: write a month as YYYYMM (202503) or a quarter as "
                "YYYYQn (2025Q1)."
            ),
            {"text": text},
        )
    if match["quarter"]:
        return TaxPeriod(int(match["year"]), (int(match["quarter"]) - 1) * 3 + 1, 3)
    return TaxPeriod(int(match["year"]), month, 1)


def last_ended_period(today: date, quarterly: bool = False) -> TaxPeriod:
    """The latest period that has ended by `today`: the one whose return is due next.

    >>> last_ended_period(date(2026, 1, 10)).code, last_ended_period(date(2026, 1, 10), True).code
    ('202512', '2025Q4')
    >>> last_ended_period(date(2026, 2, 10), True).code
    '2025Q4'
    """
    current = TaxPeriod(
        today.year,
        (today.month - 1) // 3 * 3 + 1 if quarterly else today.month,
        3 if quarterly else 1,
    )
    return current.previous()
