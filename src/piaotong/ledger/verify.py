"""Recomputing the chains: every invoice stream and the audit chain, naming the first break."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby

from piaotong.ledger.chain import ChainBreak, audit_body, event_body, verify_records
from piaotong.ledger.models import AuditEntry, LedgerEvent


@dataclass(frozen=True)
class Finding:
    chain: str
    breach: ChainBreak


def verify_ledger(batch: int = 2000) -> Iterator[Finding]:
    """Yield one finding per broken chain; streams are read in order, in bounded memory."""
    events = LedgerEvent.objects.order_by("stream", "writer", "seq").iterator(chunk_size=batch)
    for (stream, writer), records in groupby(events, key=lambda e: (e.stream, e.writer)):
        breach = verify_records(records, event_body)
        if breach is not None:
            yield Finding(f"{stream} ({writer})", breach)
    breach = verify_records(
        AuditEntry.objects.order_by("seq").iterator(chunk_size=batch), audit_body
    )
    if breach is not None:
        yield Finding("audit", breach)
