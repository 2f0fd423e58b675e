"""Numbers of fully digitalized e-invoices (数电票号码): 20 digits, no 发票代码, no 校验码.

Layout (china-einvoice.md §1.1):

====== ==========================================================================
digits meaning
====== ==========================================================================
1-2    year of issue (开票年度), last two digits
3-4    region (地区): the issuer's provincial tax bureau, see `piaotong.lib.regions`
5      channel (开具渠道): one digit; 2, 7 and 9 are seen, no public list exists, so any
       digit is accepted
6-20   sequence (顺序号): 15 digits, assigned nationally, never zero
====== ==========================================================================

>>> str(DigitalInvoiceNumber(2026, "11", "2", 42))
'26112000000000000042'
>>> parse_number(" 26112000000000000042 ").sequence
42
>>> is_valid_number("2611200000000000004")
False
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation
from piaotong.lib.regions import Region, get_region, is_provincial

NUMBER_LENGTH = 20
MIN_YEAR, MAX_YEAR = 2000, 2099
MAX_SEQUENCE = 999_999_999_999_999
# Full-width digits (０-９) arrive from Chinese input methods and copied PDFs.
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


@dataclass(frozen=True)
class DigitalInvoiceNumber:
    """A 20-digit 数电 number split into its parts.

    Invariant: every part is valid (checked on construction), so `str()` always gives 20 digits.
    """

    year: int
    region: str
    channel: str
    sequence: int

    def __post_init__(self) -> None:
        _check_parts(self.year, self.region, self.channel, self.sequence)

    def __str__(self) -> str:
        return f"{self.year % 100:02d}{self.region}{self.channel}{self.sequence:015d}"

    @property
    def region_info(self) -> Region | None:
        return get_region(self.region)


def _check_parts(year: int, region: str, channel: str, sequence: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise RuleViolation(
            "year",
            "year_range",
            _("The year %(year)s cannot be encoded: use a year from 2000 to 2099."),
            {"year": year},
        )
    if not is_provincial(region):
        raise RuleViolation(
            "region",
            "unknown_region",
            _("%(region)s is not a provincial tax region; use its two-digit code, e.g. 11."),
            {"region": region},
        )
    if not (len(channel) == 1 and channel in "0123456789"):
        raise RuleViolation(
            "channel",
            "channel_digit",
            _("The channel must be a single digit, e.g. 2; %(channel)s was given."),
            {"channel": channel},
        )
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise RuleViolation(
            "sequence",
            "sequence_range",
            _("The sequence %(sequence)s must be from 1 to 999999999999999 (15 digits)."),
            {"sequence": sequence},
        )


def compose_number(year: int, region: str, channel: str, sequence: int) -> str:
    """The 20-digit number for these parts; `year` has four digits.

    >>> compose_number(2026, "44", "9", 1)
    '26449000000000000001'
    """
    return str(DigitalInvoiceNumber(year, region, channel, sequence))


def normalize_number(text: str) -> str:
    """Surrounding whitespace removed and full-width digits made ASCII.

    >>> normalize_number("　２６１１２０００００００００００００４２ ")
    '26112000000000000042'
    """
    return text.strip().translate(_FULL_WIDTH_DIGITS)


def parse_number(text: str, today: date | None = None) -> DigitalInvoiceNumber:
    """Split a 20-digit number into its parts, or raise a `RuleViolation` on field "number".

    With `today`, a number whose year is later than today's is refused as a typing error.
    """
    number = normalize_number(text)
    _check_shape(number)
    region = number[2:4]
    if not is_provincial(region):
        raise _number_violation(
            "unknown_region",
            _(
                "Digits 3-4 (%(region)s) are not a known provincial tax region. "
                "Check the number for a typing error."
            ),
            region=region,
        )
    sequence = int(number[5:])
    if sequence == 0:
        raise _number_violation(
            "zero_sequence",
            _(
                "Digits 6-20 are all zero, and no invoice has sequence zero. "
                "Check the number for a typing error."
            ),
        )
    year = 2000 + int(number[:2])
    if today is not None and year > today.year:
        raise _number_violation(
            "future_year",
            _(
                "Digits 1-2 say the invoice was issued in %(year)s, which is later than this "
                "year. Check the number for a typing error."
            ),
            year=year,
        )
    return DigitalInvoiceNumber(year, region, number[4], sequence)


def _check_shape(number: str) -> None:
    if len(number) != NUMBER_LENGTH:
        raise _number_violation(
            "number_length",
            _(
                "%(length)s characters were given; a 数电 invoice number has exactly 20 "
                "digits. Check for missing or extra digits."
            ),
            length=len(number),
        )
    for position, char in enumerate(number, start=1):
        if char not in "0123456789":
            raise _number_violation(
                "number_not_digit",
                _(
                    "Character %(position)s (%(char)s) is not a digit; a 数电 invoice number "
                    "has digits only."
                ),
                position=position,
                char=char,
            )


def _number_violation(code: str, message: str | Promise, **params: object) -> RuleViolation:
    return RuleViolation("number", code, message, dict(params))


def is_valid_number(text: str) -> bool:
    """True when `text` parses as a 20-digit 数电 number (the year is not checked against today)."""
    try:
        parse_number(text)
    except RuleViolation:
        return False
    return True
