"""Digests for reconciliation (对账摘要): entries, cells, buckets and what differs between two nodes.

Terms:
- an *entry* (条目) is what a node holds of one invoice: number, payload hash, status, authority
  flag and the *head* of its ledger stream (the last seq of every writer, `node-11:2,node-31:1`);
- a *bucket* (桶) is the invoices of one seller region issued on one date (`11:2026-11-28`);
- a *cell* (格) is the part of a bucket whose numbers end in the same two digits (100 per bucket).

A cell's digest is the Merkle tree hash (RFC 6962: leaf prefix 0x00, node prefix 0x01) of its
entries' leaf hashes in number order; a bucket's digest is the Merkle tree hash of its 100 cell
digests. Two nodes compare bucket digests first, then the cells of differing buckets, then the
entries of differing cells only, so a million equal invoices cost one digest each and nothing
on the wire.

This module is pure: no database, no NATS.

>>> a = Entry("11", "2026-11-28", "26112000000000000107", "u1", "h1", "issued", "", "node-11:1")
>>> b = Entry("11", "2026-11-28", "26112000000000000107", "u1", "h1", "issued", "", "node-11:2")
>>> diff_entries([a], [b])[0].kind
'stale_here'
>>> merkle_root([]).hex()[:8]
'e3b0c442'
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

CELL_DIGITS = 2
CELLS = tuple(f"{i:0{CELL_DIGITS}d}" for i in range(10**CELL_DIGITS))
EMPTY = hashlib.sha256(b"").digest()


def leaf_hash(text: str) -> bytes:
    return hashlib.sha256(b"\x00" + text.encode()).digest()


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of leaf hashes (bottom-up; an odd last node moves up as is,
    which gives the same root as the recursive split at the largest power of two).

    >>> l = [leaf_hash(str(i)) for i in range(3)]
    >>> n = lambda a, b: hashlib.sha256(b"\\x01" + a + b).digest()
    >>> merkle_root(l) == n(n(l[0], l[1]), l[2])
    True
    """
    if not leaves:
        return EMPTY
    level = leaves
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def leaf_text(number: str, payload_hash: str, status: str, flag: str, head: str) -> str:
    """What an entry's leaf hash covers (`Entry.text`)."""
    return f"{number}|{payload_hash}|{status}|{flag}|{head}"


# What a cell digest needs of an entry: seller region, issue date, number, uid, leaf text.
Leaf = tuple[str, str, str, str, str]


class Entry(NamedTuple):
    """One invoice as a node holds it (see the module docstring). A named tuple: a run builds
    one per invoice held, a million of them, and a tuple is built several times faster than a
    frozen dataclass."""

    seller_region: str
    issue_date: str
    number: str
    uid: str
    payload_hash: str
    status: str
    flag: str
    head: str

    @property
    def bucket(self) -> str:
        return f"{self.seller_region}:{self.issue_date}"

    @property
    def cell(self) -> str:
        return self.number[-CELL_DIGITS:]

    @property
    def text(self) -> str:
        return leaf_text(self.number, self.payload_hash, self.status, self.flag, self.head)

    @property
    def leaf(self) -> Leaf:
        return self.seller_region, self.issue_date, self.number, self.uid, self.text

    def as_list(self) -> list[str]:
        return list(self)

    @classmethod
    def from_list(cls, values: list[str]) -> Entry:
        return cls(*(str(v) for v in values))


def head_text(tops: Iterable[tuple[str, int]]) -> str:
    """
    >>> head_text([("node-31", 1), ("node-11", 2)])
    'node-11:2,node-31:1'
    """
    return ",".join(f"{writer}:{seq}" for writer, seq in sorted(tops))


def parse_head(head: str) -> dict[str, int]:
    """
    >>> parse_head("node-11:2,node-31:1")
    {'node-11': 2, 'node-31': 1}
    """
    if not head:
        return {}
    return {w: int(s) for w, _, s in (part.rpartition(":") for part in head.split(","))}


Digest = tuple[int, str]  # (entries, hex digest)


def cell_digests(entries: Iterable[Entry]) -> dict[str, dict[str, Digest]]:
    """bucket -> cell -> digest, for non-empty cells only."""
    grouped: dict[tuple[str, str], dict[str, list[tuple[str, str, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for region, day, number, uid, text in (e.leaf for e in entries):
        grouped[region, day][number[-CELL_DIGITS:]].append((number, uid, text))
    return {
        f"{region}:{day}": {cell: _cell_digest(items) for cell, items in cells.items()}
        for (region, day), cells in grouped.items()
    }


def digests_by_date(leaves: Iterable[Leaf]) -> dict[str, dict[str, Digest]]:
    """`cell_digests` of entries' leaves that come ordered by issue date, holding one date's
    at a time: a node's million invoices are streamed through it, never all in memory.

    >>> day = lambda d, n: Entry("11", d, n, n, "h", "issued", "", "node-11:1")
    >>> some = [day("2026-11-27", "26112000000000000001"), day("2026-11-28", "26112000000000000002")]
    >>> digests_by_date(e.leaf for e in some) == cell_digests(some)
    True
    >>> digests_by_date(e.leaf for e in some[::-1])
    Traceback (most recent call last):
    ...
    ValueError: entries of 2026-11-27 came after those of a later date
    """
    out: dict[str, dict[str, Digest]] = {}
    day = ""
    cells: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for region, issue_date, number, uid, text in leaves:
        if issue_date != day:
            if issue_date < day:
                raise ValueError(f"entries of {issue_date} came after those of a later date")
            _add_cells(out, day, cells)
            day, cells = issue_date, defaultdict(list)
        cells[region, number[-CELL_DIGITS:]].append((number, uid, text))
    _add_cells(out, day, cells)
    return out


def _add_cells(
    out: dict[str, dict[str, Digest]], day: str, cells: dict[tuple[str, str], list[Any]]
) -> None:
    for (region, cell), items in cells.items():
        out.setdefault(f"{region}:{day}", {})[cell] = _cell_digest(items)


def _cell_digest(items: list[tuple[str, str, str]]) -> Digest:
    """The digest of one cell's (number, uid, leaf text) items, in number order."""
    items.sort()
    return len(items), merkle_root([leaf_hash(text) for _, _, text in items]).hex()


def bucket_digests(cells: dict[str, dict[str, Digest]]) -> dict[str, Digest]:
    """bucket -> digest over its 100 cell digests (an empty cell counts as the empty hash)."""
    out = {}
    for bucket, by_cell in cells.items():
        roots = [bytes.fromhex(by_cell[c][1]) if c in by_cell else EMPTY for c in CELLS]
        out[bucket] = (sum(d[0] for d in by_cell.values()), merkle_root(roots).hex())
    return out


def differing(mine: dict[str, Digest], theirs: dict[str, Digest]) -> list[str]:
    """Keys whose digests differ, including keys only one side has.

    >>> differing({"a": (1, "x"), "b": (1, "y")}, {"a": (1, "x"), "c": (2, "z")})
    ['b', 'c']
    """
    return sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))


@dataclass(frozen=True)
class Difference:
    """One invoice whose entries differ. `kind`: missing_here, missing_at_peer, stale_here,
    stale_at_peer, diverged (same stream heads, different rows: not repairable by events)."""

    number: str
    uid: str
    kind: str
    here: Entry | None
    there: Entry | None


def diff_entries(mine: Iterable[Entry], theirs: Iterable[Entry]) -> list[Difference]:
    """Entry-by-entry comparison of two lists of the same cells."""
    here = {e.uid: e for e in mine}
    there = {e.uid: e for e in theirs}
    out = []
    for uid in sorted(set(here) | set(there)):
        a, b = here.get(uid), there.get(uid)
        if a == b:
            continue
        number = (a or b).number  # type: ignore[union-attr]
        out.append(Difference(number, uid, _kind(a, b), a, b))
    return out


def _kind(a: Entry | None, b: Entry | None) -> str:
    if a is None:
        return "missing_here"
    if b is None:
        return "missing_at_peer"
    mine, theirs = parse_head(a.head), parse_head(b.head)
    if any(theirs.get(w, 0) > s for w, s in mine.items()) or set(theirs) - set(mine):
        return "stale_here"
    if any(mine.get(w, 0) > s for w, s in theirs.items()) or set(mine) - set(theirs):
        return "stale_at_peer"
    return "diverged"
