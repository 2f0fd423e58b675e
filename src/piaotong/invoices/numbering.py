"""Number allocation (赋码): unique and gapless per (year, region, channel).

The sequence row is bumped, or created for the first number of a year, by one INSERT ... ON
CONFLICT DO UPDATE ... RETURNING, which locks it for the rest of the issuing transaction:
concurrent issuers queue on it and a rolled-back issue gives its numbers back. That serialises
issuing per key on purpose: gapless numbering cannot be had any other way.
"""

from __future__ import annotations

from django.conf import settings

from piaotong.fastsql import Rows
from piaotong.invoices.models import NumberSequence
from piaotong.lib.invoice_numbers import compose_number

_TABLE = NumberSequence._meta.db_table
_BUMP = (
    f"INSERT INTO {_TABLE} (year, region, channel, last_value) VALUES (%s, %s, %s, %s) "  # noqa: S608 - table name is ours
    "ON CONFLICT (year, region, channel) "
    f"DO UPDATE SET last_value = {_TABLE}.last_value + excluded.last_value RETURNING last_value"
)


def reserve_numbers(year: int, count: int) -> Rows:
    """Take `count` numbers of this node's region and channel; read them with `numbers_from`.

    Under `fastsql.pipeline()` the statement is sent at once and its answer read later.
    """
    return Rows(_BUMP, [year, settings.PIAOTONG_REGION, settings.PIAOTONG_CHANNEL, count])


def numbers_from(reserved: Rows, year: int, count: int) -> list[str]:
    row = reserved.first()
    assert row is not None
    last = int(row[0])
    region, channel = settings.PIAOTONG_REGION, settings.PIAOTONG_CHANNEL
    return [compose_number(year, region, channel, n) for n in range(last - count + 1, last + 1)]


def allocate_numbers(year: int, count: int = 1) -> list[str]:
    """Reserve `count` consecutive numbers for this node's region and channel."""
    return numbers_from(reserve_numbers(year, count), year, count)
