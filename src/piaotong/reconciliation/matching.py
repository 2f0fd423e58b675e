"""Matching purchase records (进项台账) against received invoices: an ordered rule table.

Terms: a *record* is one row of the imported books or supplier list (`BookRecord`); an
*invoice* is a received invoice on the platform (`PlatformInvoice`, my organisation is the
buyer). A *pair* joins one record and one invoice; each record and each invoice is in at most
one pair (each pair consumed once).

The rules run in this order, each over every record still unpaired, so a stronger rule always
claims its invoice before a weaker one can (china-einvoice.md §7):

====================  ==========  ========================================================
rule                  status      when
====================  ==========  ========================================================
exact                 exact       same number as written, seller tax id, amounts and date
number_normalised     exact       as exact, once spaces, full-width digits, prefixes or a run-in
                                  legacy code are removed from the number
rounding              suggested   same number and seller; amounts differ within the rounding
                                  allowance (per line, capped per invoice); same date
date_window           suggested   as rounding, with the dates up to ± N days apart
fuzzy_number          suggested   number one digit off or two adjacent digits swapped; same
                                  seller, same date, amounts within the allowance
legal_entity          suggested   same number; a different seller tax id of the same legal
                                  entity (same organisation code, or a branch of the same
                                  company by name); amounts within the allowance, dates within
                                  the window
legal_entity_fuzzy    suggested   fuzzy_number with the seller matched at legal-entity level
mismatch              mismatch    same number, but seller, amounts or date disagree beyond the
                                  tolerances: the same invoice, booked wrongly (or a wrong number)
====================  ==========  ========================================================

Whatever is left is *missing on the platform* (a record without invoice) or *missing in the
books* (an invoice without record). Every decision carries the rule that made it and the fields
that differ (`FieldDiff`), from which `explain.py` writes the sentence in Chinese and English.

Fuzzy numbers are found without comparing every pair: invoices are bucketed by (issue date,
amount in whole yuan), and a record looks only into its own date and the few yuan buckets its
allowance can reach.

Memory (1,000,000 rows must fit in the import's 500 MB): records and invoices are kept in
column tables (`RecordTable`, `InvoiceTable`) with numbers packed in 20 bytes, amounts in
integer cents and dates as day numbers, about 70 bytes a row instead of some 600 for a
dataclass of Decimals; a `BookRecord` or `PlatformInvoice` is made only when one is asked for.
Numbers are looked up through a hash table in one array (`NumberIndex`), fuzzy-number buckets
are a sorted array; no dict or list holds a million Python objects. Decisions are produced one
by one when the result is iterated (`Reconciliation`), from a few bytes per row kept by the
matcher, so a million of them never exist at once. Integer cents are exact: amounts are whole
cents everywhere (the reader, the database, the tolerances), and `to_cents` refuses finer ones.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar, overload

from piaotong.reconciliation.normalize import (
    legal_entity_name,
    one_digit_apart,
    organisation_code,
)

MONEY_FIELDS = ("amount", "tax", "total")


class Status(StrEnum):
    EXACT = "exact"
    SUGGESTED = "suggested"
    MISMATCH = "mismatch"
    MANUAL = "manual"
    MISSING_IN_BOOKS = "missing_in_books"
    MISSING_ON_PLATFORM = "missing_on_platform"


class Rule(StrEnum):
    EXACT = "exact"
    NUMBER_NORMALISED = "number_normalised"
    ROUNDING = "rounding"
    DATE_WINDOW = "date_window"
    FUZZY_NUMBER = "fuzzy_number"
    LEGAL_ENTITY = "legal_entity"
    LEGAL_ENTITY_FUZZY = "legal_entity_fuzzy"
    MISMATCH = "mismatch"
    MANUAL = "manual"
    NO_INVOICE = "no_invoice"
    NO_RECORD = "no_record"


RULE_STATUS: dict[Rule, Status] = {
    Rule.EXACT: Status.EXACT,
    Rule.NUMBER_NORMALISED: Status.EXACT,
    Rule.ROUNDING: Status.SUGGESTED,
    Rule.DATE_WINDOW: Status.SUGGESTED,
    Rule.FUZZY_NUMBER: Status.SUGGESTED,
    Rule.LEGAL_ENTITY: Status.SUGGESTED,
    Rule.LEGAL_ENTITY_FUZZY: Status.SUGGESTED,
    Rule.MISMATCH: Status.MISMATCH,
    Rule.MANUAL: Status.MANUAL,
    Rule.NO_INVOICE: Status.MISSING_ON_PLATFORM,
    Rule.NO_RECORD: Status.MISSING_IN_BOOKS,
}


@dataclass(frozen=True)
class Tolerances:
    """How far a pair may differ and still be suggested (configurable per import).

    The rounding allowance grows with the invoice's lines, because each line's tax is rounded to
    the cent on its own (china-einvoice.md §4), and is capped per invoice (1.27, the tolerance
    invoicing software enforces).

    >>> Tolerances().allowance(3), Tolerances().allowance(500)
    (Decimal('0.03'), Decimal('1.27'))
    """

    per_line: Decimal = Decimal("0.01")
    per_invoice: Decimal = Decimal("1.27")
    date_window_days: int = 10

    def allowance(self, lines: int) -> Decimal:
        return min(self.per_invoice, self.per_line * max(lines, 1))

    def allowance_cents(self, lines: int) -> int:
        return min(to_cents(self.per_invoice), to_cents(self.per_line) * max(lines, 1))


@dataclass(frozen=True, slots=True)
class BookRecord:
    """One imported row. `key` is the normalised invoice key (`normalize.invoice_key`), `number`
    the number as written; at least one of `amount` (金额) and `total` (价税合计) is set."""

    row: int
    number: str
    key: str
    issue_date: date
    seller_tax_id: str
    seller_name: str = ""
    amount: Decimal | None = None
    tax: Decimal | None = None
    total: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlatformInvoice:
    """One received invoice: `number` is its key (20 digits), `lines` its number of lines."""

    id: int
    number: str
    issue_date: date
    seller_tax_id: str
    seller_name: str
    amount: Decimal
    tax: Decimal
    total: Decimal
    lines: int = 1


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One field where the record and the invoice disagree; `delta` is book minus platform
    (amounts in yuan, dates in days) where that means something."""

    field: str
    book: str
    platform: str
    delta: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the matcher decided about one record, one invoice, or a pair of them.

    `record` and `invoice` index the inputs. `notes` adds facts for the explanation: "typo"
    (digit/swap), "entity_by" (organisation_code/name), "allowance", "taken_by_row",
    "candidates".
    """

    record: int | None
    invoice: int | None
    rule: Rule
    diffs: tuple[FieldDiff, ...] = ()
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return RULE_STATUS[self.rule]


def compare(record: BookRecord, invoice: PlatformInvoice) -> tuple[FieldDiff, ...]:
    """Every field in which the record differs from the invoice (fields the record leaves
    empty are not compared)."""
    diffs = []
    if record.number != invoice.number:
        diffs.append(FieldDiff("number", record.number, invoice.number))
    if record.seller_tax_id != invoice.seller_tax_id:
        diffs.append(FieldDiff("seller_tax_id", record.seller_tax_id, invoice.seller_tax_id))
    if record.seller_name and _name(record.seller_name) != _name(invoice.seller_name):
        diffs.append(FieldDiff("seller_name", record.seller_name, invoice.seller_name))
    if record.issue_date != invoice.issue_date:
        days = (record.issue_date - invoice.issue_date).days
        diffs.append(
            FieldDiff(
                "issue_date",
                record.issue_date.isoformat(),
                invoice.issue_date.isoformat(),
                str(days),
            )
        )
    for name in MONEY_FIELDS:
        book: Decimal | None = getattr(record, name)
        platform: Decimal = getattr(invoice, name)
        if book is not None and book != platform:
            diffs.append(FieldDiff(name, str(book), str(platform), str(book - platform)))
    return tuple(diffs)


def _name(text: str) -> str:
    return "".join(text.split()).replace("（", "(").replace("）", ")")


def money_gap(record: BookRecord, invoice: PlatformInvoice) -> Decimal:
    """The largest difference over the amounts the record gives."""
    gap = Decimal(0)
    for name in MONEY_FIELDS:
        book: Decimal | None = getattr(record, name)
        if book is not None:
            gap = max(gap, abs(book - getattr(invoice, name)))
    return gap


# --- Column tables ----------------------------------------------------------------------------

NO_CENTS = -(2**63)  # an amount the row leaves empty
_INTERN_LIMIT = (
    100_000  # distinct seller ids and names shared between rows; beyond, kept as they come
)


def to_cents(amount: Decimal) -> int:
    """An amount in yuan as integer cents; amounts are always whole cents (the reader and the
    database keep two decimals), and anything finer is refused rather than rounded.

    >>> to_cents(Decimal("1060.03")), to_cents(Decimal("-0.5"))
    (106003, -50)
    """
    cents = amount.scaleb(2)
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(cents)


def from_cents(cents: int) -> Decimal | None:
    """Integer cents as yuan with two decimals, None for an empty amount.

    >>> from_cents(106003), from_cents(NO_CENTS)
    (Decimal('1060.03'), None)
    """
    return None if cents == NO_CENTS else Decimal(cents).scaleb(-2)


def _optional_cents(amount: Decimal | None) -> int:
    return NO_CENTS if amount is None else to_cents(amount)


class _Interner:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        found = self.values.get(value)
        if found is not None:
            return found
        if len(self.values) < _INTERN_LIMIT:
            self.values[value] = value
        return value


class NumberColumn(Sequence[str]):
    """Invoice numbers (keys) at 20 bytes each instead of a 69-byte string: ASCII numbers of up
    to 20 characters, as every normalised key and platform number is, are packed into one
    bytearray padded with NUL; anything else is kept as it is, aside."""

    WIDTH = 20

    def __init__(self) -> None:
        self.packed = bytearray()
        self.other: dict[int, str] = {}

    def append(self, text: str) -> None:
        data = text.encode("ascii", "replace")
        if len(data) <= self.WIDTH and text.isascii() and "\0" not in text:
            self.packed += data.ljust(self.WIDTH, b"\0")
        else:
            self.other[len(self)] = text
            self.packed += bytes(self.WIDTH)

    def __len__(self) -> int:
        return len(self.packed) // self.WIDTH

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if self.other and index in self.other:
            return self.other[index]
        start = index * self.WIDTH
        if not 0 <= start < len(self.packed):
            raise IndexError(index)
        return self.packed[start : start + self.WIDTH].rstrip(b"\0").decode("ascii")


class _WrittenNumbers(Sequence[str]):
    """Numbers as written in the books: the key, except for the rows noted aside."""

    def __init__(self, keys: NumberColumn) -> None:
        self.keys = keys
        self.differing: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self)))]
        written = self.differing.get(index)
        return written if written is not None else self.keys[index]


class NumberIndex:
    """Positions in a column of numbers, by number: an open-addressing hash table in one array
    of 4 bytes a slot (a dict of a million numbers and their positions takes about 100 MB).
    Equal numbers are found in the order they were added."""

    def __init__(self, numbers: Sequence[str], *, add_all: bool = True) -> None:
        self.numbers, self.count = numbers, 0
        self._allocate(1 << max(4, (2 * len(numbers)).bit_length()))
        if add_all:
            for position in range(len(numbers)):
                self.add(position)

    def _allocate(self, size: int) -> None:
        self.mask, self.slots = size - 1, array("i", [-1]) * size

    def add(self, position: int) -> None:
        """Index numbers[position] (kept at most half full, so probe runs stay short)."""
        if 2 * (self.count + 1) > len(self.slots):
            old = sorted(p for p in self.slots if p >= 0)  # in the order added
            self._allocate(2 * len(self.slots))
            for kept in old:
                self._place(kept)
        self._place(position)
        self.count += 1

    def _place(self, position: int) -> None:
        slot = hash(self.numbers[position]) & self.mask
        while self.slots[slot] >= 0:
            slot = (slot + 1) & self.mask
        self.slots[slot] = position

    def find(self, number: str) -> list[int]:
        found, slot = [], hash(number) & self.mask
        while (position := self.slots[slot]) >= 0:
            if self.numbers[position] == number:
                found.append(position)
            slot = (slot + 1) & self.mask
        return found


T = TypeVar("T")


class _Columns(Sequence[T]):
    """What both tables keep as columns: issue dates, sellers (interned), amounts in cents.
    A subclass adds its own columns and makes the n-th item (`_item`) when asked."""

    def __init__(self) -> None:
        self.days = array("i")  # date.toordinal()
        self.seller_tax_ids: list[str] = []
        self.seller_names: list[str] = []
        self.amounts, self.taxes, self.totals = array("q"), array("q"), array("q")
        self._intern = _Interner()

    def _append_common(
        self, issue_date: date, seller_tax_id: str, seller_name: str, cents: tuple[int, int, int]
    ) -> None:
        self.days.append(issue_date.toordinal())
        self.seller_tax_ids.append(self._intern(seller_tax_id))
        self.seller_names.append(self._intern(seller_name))
        self.amounts.append(cents[0])
        self.taxes.append(cents[1])
        self.totals.append(cents[2])

    def __len__(self) -> int:
        return len(self.days)

    def _item(self, index: int) -> T:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self._item(n) for n in range(*index.indices(len(self)))]
        return self._item(index)

    def __iter__(self) -> Iterator[T]:
        return (self._item(n) for n in range(len(self)))


class RecordTable(_Columns[BookRecord]):
    """Imported rows as columns: `records[n]` makes the n-th `BookRecord` when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = array("i")
        self.keys = NumberColumn()
        self.numbers = _WrittenNumbers(self.keys)

    @classmethod
    def of(cls, records: Iterable[BookRecord]) -> RecordTable:
        table = cls()
        for record in records:
            table.append(record)
        return table

    def append(self, record: BookRecord) -> None:
        if record.number != record.key:
            self.numbers.differing[len(self.rows)] = record.number
        self.rows.append(record.row)
        self.keys.append(record.key)
        cents = (
            _optional_cents(record.amount),
            _optional_cents(record.tax),
            _optional_cents(record.total),
        )
        self._append_common(record.issue_date, record.seller_tax_id, record.seller_name, cents)

    def _item(self, index: int) -> BookRecord:
        return BookRecord(
            row=self.rows[index],
            number=self.numbers[index],
            key=self.keys[index],
            issue_date=date.fromordinal(self.days[index]),
            seller_tax_id=self.seller_tax_ids[index],
            seller_name=self.seller_names[index],
            amount=from_cents(self.amounts[index]),
            tax=from_cents(self.taxes[index]),
            total=from_cents(self.totals[index]),
        )

    def period(self) -> tuple[date, date]:
        """The earliest and the latest issue date."""
        return date.fromordinal(min(self.days)), date.fromordinal(max(self.days))


class InvoiceTable(_Columns[PlatformInvoice]):
    """Received invoices as columns: `invoices[n]` makes the n-th `PlatformInvoice` when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = array("q")
        self.numbers = NumberColumn()
        self.lines = array("i")

    @classmethod
    def of(cls, invoices: Iterable[PlatformInvoice]) -> InvoiceTable:
        table = cls()
        for invoice in invoices:
            table.append(invoice)
        return table

    def append(self, invoice: PlatformInvoice) -> None:
        self.add(
            invoice.id,
            invoice.number,
            invoice.issue_date,
            invoice.seller_tax_id,
            invoice.seller_name,
            invoice.amount,
            invoice.tax,
            invoice.total,
            invoice.lines,
        )

    def add(
        self,
        id_: int,
        number: str,
        issue_date: date,
        seller_tax_id: str,
        seller_name: str,
        amount: Decimal,
        tax: Decimal,
        total: Decimal,
        lines: int = 1,
    ) -> None:
        """Append one invoice from its fields (a database row), without making the dataclass."""
        self.ids.append(id_)
        self.numbers.append(number)
        cents = (to_cents(amount), to_cents(tax), to_cents(total))
        self._append_common(issue_date, seller_tax_id, seller_name, cents)
        self.lines.append(lines)

    def _item(self, index: int) -> PlatformInvoice:
        return PlatformInvoice(
            id=self.ids[index],
            number=self.numbers[index],
            issue_date=date.fromordinal(self.days[index]),
            seller_tax_id=self.seller_tax_ids[index],
            seller_name=self.seller_names[index],
            amount=Decimal(self.amounts[index]).scaleb(-2),
            tax=Decimal(self.taxes[index]).scaleb(-2),
            total=Decimal(self.totals[index]).scaleb(-2),
            lines=self.lines[index],
        )


# --- The matcher ------------------------------------------------------------------------------

_Candidate = tuple[int, int, int]  # (money gap in cents, day gap, invoice index): smaller is better
_Finder = Callable[[int], "tuple[int, dict[str, str]] | None"]
_RULES = tuple(Rule)
_DAY_SHIFT, _YUAN_OFFSET = 42, 2**41  # bucket code: day << 42 | (whole yuan + 2**41)


def _yuan(cents: int) -> int:
    """Whole yuan, truncated toward zero like int(Decimal)."""
    whole = abs(cents) // 100
    return whole if cents >= 0 else -whole


def _sorted_positions(values: Sequence[object]) -> array[int]:
    """Positions in the order of their values (stable), as an array: the list of a million
    Python ints that sorting needs lives only inside this call."""
    return array("i", sorted(range(len(values)), key=values.__getitem__))  # type: ignore[arg-type]


class _Matcher:
    """Runs the rule table over two column tables. Per record it keeps the invoice it was paired
    with and the rule (arrays), the order of pairing, and notes only where there are any."""

    def __init__(
        self, records: RecordTable, invoices: InvoiceTable, tolerances: Tolerances
    ) -> None:
        self.records, self.invoices, self.tolerances = records, invoices, tolerances
        self.invoice_free = bytearray(b"\x01") * len(invoices)
        self.record_free = bytearray(b"\x01") * len(records)
        self.invoice_of = array("i", [-1]) * len(records)
        self.record_of = array("i", [-1]) * len(invoices)
        self.rule_of = bytearray(len(records))
        self.pair_order = array("i")
        self.pair_notes: dict[int, dict[str, str]] = {}  # record index -> notes, when any
        self.ambiguous: dict[int, int] = {}  # record index -> number of equally good candidates
        self.first_same, self.more_same = self._join_numbers()
        self._bucket_codes: array[int] | None = None
        self._bucket_owners = array("i")
        self._entities: dict[int, tuple[str, str]] = {}
        self.reach = int(tolerances.per_invoice) + 1
        self.per_line = to_cents(tolerances.per_line)
        self.per_invoice = to_cents(tolerances.per_invoice)

    def _join_numbers(self) -> tuple[array[int], dict[int, list[int]]]:
        """For each record the first invoice (lowest index) with its key, -1 if none, and the
        further ones where numbers repeat."""
        keys, index = self.records.keys, NumberIndex(self.invoices.numbers)
        first, more = array("i", [-1]) * len(keys), {}
        for r in range(len(keys)):
            found = index.find(keys[r])
            if found:
                first[r] = found[0]
                if len(found) > 1:
                    more[r] = found[1:]
        return first, more

    # Candidates ---------------------------------------------------------------------------

    def same_number_all(self, r: int) -> Iterator[int]:
        i = self.first_same[r]
        if i >= 0:
            yield i
            yield from self.more_same.get(r, ())

    def same_number(self, r: int) -> Iterator[int]:
        for i in self.same_number_all(r):
            if self.invoice_free[i]:
                yield i

    def buckets(self) -> tuple[array[int], array[int]]:
        """Invoices free when first asked, sorted by (issue date, whole yuan of the total and of
        the pre-tax amount): invoices paired later are skipped when read, invoices paired before
        could never be chosen."""
        if self._bucket_codes is None:
            codes, owners = array("q"), array("i")
            days, totals, amounts = self.invoices.days, self.invoices.totals, self.invoices.amounts
            for i in range(len(self.invoices)):
                if not self.invoice_free[i]:
                    continue
                day = days[i] << _DAY_SHIFT
                total, amount = _yuan(totals[i]), _yuan(amounts[i])
                codes.append(day | (total + _YUAN_OFFSET))
                owners.append(i)
                if amount != total:
                    codes.append(day | (amount + _YUAN_OFFSET))
                    owners.append(i)
            order = _sorted_positions(codes)
            self._bucket_codes = array("q", (codes[n] for n in order))
            self._bucket_owners = array("i", (owners[n] for n in order))
        return self._bucket_codes, self._bucket_owners

    def near_numbers(self, r: int) -> Iterator[tuple[int, str]]:
        """Free invoices of the record's date, with an amount in reach, whose number is one slip
        away from the record's."""
        records = self.records
        money = records.totals[r] if records.totals[r] != NO_CENTS else records.amounts[r]
        if money == NO_CENTS:
            return
        codes, owners = self.buckets()
        day, yuan = records.days[r] << _DAY_SHIFT, _yuan(money) + _YUAN_OFFSET
        low = bisect_left(codes, day | (yuan - self.reach))
        high = bisect_right(codes, day | (yuan + self.reach))
        key, numbers, seen = records.keys[r], self.invoices.numbers, set()
        for n in range(low, high):
            i = owners[n]
            if i in seen or not self.invoice_free[i]:
                continue
            seen.add(i)
            typo = one_digit_apart(key, numbers[i])
            if typo:
                yield i, typo

    # Conditions ---------------------------------------------------------------------------

    def money_gap(self, r: int, i: int) -> int:
        """The largest difference in cents over the amounts the record gives."""
        rec, inv, gap = self.records, self.invoices, 0
        for book, platform in (
            (rec.amounts[r], inv.amounts[i]),
            (rec.taxes[r], inv.taxes[i]),
            (rec.totals[r], inv.totals[i]),
        ):
            if book != NO_CENTS:
                gap = max(gap, abs(book - platform))
        return gap

    def allowance(self, i: int) -> int:
        return min(self.per_invoice, self.per_line * max(self.invoices.lines[i], 1))

    def within_allowance(self, r: int, i: int) -> int | None:
        """The money gap if within the rounding allowance of the invoice, else None."""
        gap = self.money_gap(r, i)
        return gap if gap <= self.allowance(i) else None

    def day_gap(self, r: int, i: int) -> int:
        return abs(self.records.days[r] - self.invoices.days[i])

    def same_seller(self, r: int, i: int) -> bool:
        return self.records.seller_tax_ids[r] == self.invoices.seller_tax_ids[i]

    def entity_of_invoice(self, i: int) -> tuple[str, str]:
        if i not in self._entities:
            self._entities[i] = (
                organisation_code(self.invoices.seller_tax_ids[i]),
                legal_entity_name(self.invoices.seller_names[i]),
            )
        return self._entities[i]

    def same_entity(self, r: int, i: int) -> str:
        """ "organisation_code" or "name" if the sellers differ but are one legal entity."""
        code, name = self.entity_of_invoice(i)
        if code and organisation_code(self.records.seller_tax_ids[r]) == code:
            return "organisation_code"
        seller_name = self.records.seller_names[r]
        if seller_name and legal_entity_name(seller_name) == name:
            return "name"
        return ""

    # Rules: each returns (invoice index, notes) for a record, or None ------------------------

    def best(
        self, r: int, found: Iterable[tuple[_Candidate, dict[str, str]]]
    ) -> tuple[int, dict[str, str]] | None:
        """The closest candidate; none when two are equally close (the record is then noted as
        ambiguous, for a person to decide)."""
        ranked = sorted(found, key=lambda item: item[0])
        if not ranked:
            return None
        if len(ranked) > 1 and ranked[0][0][:2] == ranked[1][0][:2]:
            self.ambiguous[r] = max(self.ambiguous.get(r, 0), len(ranked))
            return None
        return ranked[0][0][2], ranked[0][1]

    def rule_exact(self, r: int) -> tuple[int, dict[str, str]] | None:
        for i in self.same_number(r):
            if (
                self.same_seller(r, i)
                and self.records.days[r] == self.invoices.days[i]
                and self.money_gap(r, i) == 0
            ):
                return i, {}
        return None

    def rule_rounding(self, r: int, window: int) -> tuple[int, dict[str, str]] | None:
        found = []
        for i in self.same_number(r):
            gap = self.within_allowance(r, i)
            days = self.day_gap(r, i)
            if self.same_seller(r, i) and gap is not None and days <= window:
                allowance = self.tolerances.allowance(self.invoices.lines[i])
                found.append(((gap, days, i), {"allowance": str(allowance)}))
        return self.best(r, found)

    def rule_fuzzy(self, r: int, entity: bool) -> tuple[int, dict[str, str]] | None:
        found = []
        for i, typo in self.near_numbers(r):
            gap = self.within_allowance(r, i)
            if gap is None:
                continue
            notes = {"typo": typo}
            if entity:
                by = self.same_entity(r, i) if not self.same_seller(r, i) else ""
                if not by:
                    continue
                notes["entity_by"] = by
            elif not self.same_seller(r, i):
                continue
            found.append(((gap, 0, i), notes))
        return self.best(r, found)

    def rule_entity(self, r: int) -> tuple[int, dict[str, str]] | None:
        found = []
        for i in self.same_number(r):
            gap = self.within_allowance(r, i)
            days = self.day_gap(r, i)
            if gap is None or days > self.tolerances.date_window_days or self.same_seller(r, i):
                continue
            by = self.same_entity(r, i)
            if by:
                found.append(((gap, days, i), {"entity_by": by}))
        return self.best(r, found)

    def rule_mismatch(self, r: int) -> tuple[int, dict[str, str]] | None:
        found: list[tuple[_Candidate, dict[str, str]]] = [
            ((self.money_gap(r, i), self.day_gap(r, i), i), {}) for i in self.same_number(r)
        ]
        found.sort(key=lambda item: item[0])
        return (found[0][0][2], found[0][1]) if found else None

    # Running the table --------------------------------------------------------------------

    def rules(self) -> list[tuple[Rule, _Finder]]:
        window = self.tolerances.date_window_days
        return [
            (Rule.EXACT, self.rule_exact),
            (Rule.ROUNDING, lambda r: self.rule_rounding(r, 0)),
            (Rule.DATE_WINDOW, lambda r: self.rule_rounding(r, window)),
            (Rule.FUZZY_NUMBER, lambda r: self.rule_fuzzy(r, entity=False)),
            (Rule.LEGAL_ENTITY, self.rule_entity),
            (Rule.LEGAL_ENTITY_FUZZY, lambda r: self.rule_fuzzy(r, entity=True)),
            (Rule.MISMATCH, self.rule_mismatch),
        ]

    def pair(self, r: int, i: int, rule: Rule, notes: dict[str, str]) -> None:
        if rule is Rule.EXACT and self.records.numbers[r] != self.invoices.numbers[i]:
            rule = Rule.NUMBER_NORMALISED
        self.record_free[r], self.invoice_free[i] = 0, 0
        self.invoice_of[r], self.record_of[i] = i, r
        self.rule_of[r] = _RULES.index(rule)
        self.pair_order.append(r)
        if notes:
            self.pair_notes[r] = notes

    def run(self) -> None:
        for rule, finder in self.rules():
            for r in range(len(self.records)):
                if self.record_free[r]:
                    found = finder(r)
                    if found is not None:
                        self.pair(r, found[0], rule, found[1])

    def unmatched_notes(self, r: int) -> dict[str, str]:
        notes = {}
        taken = [i for i in self.same_number_all(r) if self.record_of[i] >= 0]
        if taken:
            notes["taken_by_row"] = str(self.records.rows[self.record_of[taken[0]]])
        if r in self.ambiguous:
            notes["candidates"] = str(self.ambiguous[r])
        return notes


class Reconciliation:
    """The result of matching: iterating it yields one `Decision` per pair (in rule order, then
    in row order), per unpaired record and per unpaired invoice, made one at a time from the
    matcher's arrays. `records` and `invoices` are the sequences given to `match`."""

    def __init__(
        self,
        matcher: _Matcher,
        records: Sequence[BookRecord],
        invoices: Sequence[PlatformInvoice],
    ) -> None:
        self._matcher, self.records, self.invoices = matcher, records, invoices

    def __len__(self) -> int:
        m = self._matcher
        return len(m.pair_order) + m.record_free.count(1) + m.invoice_free.count(1)

    def __iter__(self) -> Iterator[Decision]:
        m = self._matcher
        for r in m.pair_order:
            i = m.invoice_of[r]
            diffs = compare(self.records[r], self.invoices[i])
            yield Decision(r, i, _RULES[m.rule_of[r]], diffs, dict(m.pair_notes.get(r, {})))
        for r in range(len(m.record_free)):
            if m.record_free[r]:
                yield Decision(r, None, Rule.NO_INVOICE, (), m.unmatched_notes(r))
        for i in range(len(m.invoice_free)):
            if m.invoice_free[i]:
                yield Decision(None, i, Rule.NO_RECORD)

    def summary(self) -> dict[str, int]:
        """How many items of each status, without making the decisions."""
        m = self._matcher
        counts: dict[str, int] = {}
        for r in m.pair_order:
            status = RULE_STATUS[_RULES[m.rule_of[r]]].value
            counts[status] = counts.get(status, 0) + 1
        unpaired = {
            Status.MISSING_ON_PLATFORM.value: m.record_free.count(1),
            Status.MISSING_IN_BOOKS.value: m.invoice_free.count(1),
        }
        return counts | {status: count for status, count in unpaired.items() if count}


def match(
    records: Sequence[BookRecord],
    invoices: Sequence[PlatformInvoice],
    tolerances: Tolerances | None = None,
) -> Reconciliation:
    """Pair records with invoices by the rule table now; the decisions are made as the result
    is iterated. Column tables are used as they are; other sequences are copied into tables
    for matching, while decisions still compare the objects given."""
    record_table = records if isinstance(records, RecordTable) else RecordTable.of(records)
    invoice_table = invoices if isinstance(invoices, InvoiceTable) else InvoiceTable.of(invoices)
    matcher = _Matcher(record_table, invoice_table, tolerances or Tolerances())
    matcher.run()
    return Reconciliation(matcher, records, invoices)


def reconcile(
    records: Sequence[BookRecord],
    invoices: Sequence[PlatformInvoice],
    tolerances: Tolerances | None = None,
) -> list[Decision]:
    """Pair records with invoices by the rule table; one decision per pair, per unpaired record
    and per unpaired invoice. Pairs come first, in rule order, then records, then invoices."""
    return list(match(records, invoices, tolerances))
