"""Number allocation (赋码): unique and gapless per (year, region, channel).

The sequence row is locked for the rest of the issuing transaction, so concurrent issuers queue
on it and a rolled-back issue gives its number back. That serialises issuing per key on purpose:
gapless numbering cannot be had any other way.
"""

from __future__ import annotations

from django.conf import settings

from piaotong.invoices.models import NumberSequence
from piaotong.lib.invoice_numbers import compose_number


def allocate_numbers(year: int, count: int = 1) -> list[str]:
    """Reserve `count` consecutive numbers for this node's region and channel."""
    region, channel = settings.PIAOTONG_REGION, settings.PIAOTONG_CHANNEL
    locked = NumberSequence.objects.select_for_update()
    sequence = locked.filter(year=year, region=region, channel=channel).first()
    if sequence is None:
        # First number of the year: create the row without racing a concurrent first issuer.
        NumberSequence.objects.bulk_create(
            [NumberSequence(year=year, region=region, channel=channel)], ignore_conflicts=True
        )
        sequence = locked.get(year=year, region=region, channel=channel)
    first = sequence.last_value + 1
    sequence.last_value += count
    sequence.save(update_fields=["last_value"])
    return [compose_number(year, region, channel, n) for n in range(first, first + count)]
