"""Number allocation (赋码): unique and gapless per (year, region, channel).

The sequence row is bumped with UPDATE ... RETURNING, which locks it for the rest of the issuing
transaction: concurrent issuers queue on it and a rolled-back issue gives its numbers back. That
serialises issuing per key on purpose: gapless numbering cannot be had any other way.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection

from piaotong.invoices.models import NumberSequence
from piaotong.lib.invoice_numbers import compose_number

_BUMP = (
    f"UPDATE {NumberSequence._meta.db_table} SET last_value = last_value + %s "  # noqa: S608 - table name is ours
    "WHERE year = %s AND region = %s AND channel = %s RETURNING last_value"
)


def _bump(year: int, region: str, channel: str, count: int) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(_BUMP, [count, year, region, channel])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def allocate_numbers(year: int, count: int = 1) -> list[str]:
    """Reserve `count` consecutive numbers for this node's region and channel."""
    region, channel = settings.PIAOTONG_REGION, settings.PIAOTONG_CHANNEL
    last = _bump(year, region, channel, count)
    if last is None:
        # First number of the year: create the row without racing a concurrent first issuer.
        NumberSequence.objects.bulk_create(
            [NumberSequence(year=year, region=region, channel=channel)], ignore_conflicts=True
        )
        last = _bump(year, region, channel, count)
        assert last is not None
    return [compose_number(year, region, channel, n) for n in range(last - count + 1, last + 1)]
