"""The input rules and comparison logic of verification (查验), without a database.

Terms (china-einvoice.md §3):

- claim (查验要素): what the person typed or what a QR code or file says: for a fully digitalized
  invoice (数电票) the 20-digit number, the issue date (开票日期) and the tax-inclusive total
  (价税合计); for a legacy invoice (税控发票) the invoice code (发票代码), the 8-digit number, the
  issue date and either the amount excluding tax (不含税金额, 专票 kinds) or the last six digits of
  the check code (校验码后六位, 普票 kinds).
- record: the stored facts of the invoice the claim names.
- comparison: which fields of the claim differ from the record, and hints about why (the classic
  mistake: the pre-tax amount typed where a 数电票 needs the tax-inclusive total).

>>> from datetime import date
>>> today = date(2026, 11, 28)
>>> claim = digital_claim("26112000000000000042", "2026-11-20", "1,130.00", today)
>>> claim.total_with_tax, claim.key
(Decimal('1130.00'), '26112000000000000042')
>>> record = Record("26112000000000000042", date(2026, 11, 20), "digital_special",
...                 Decimal("1000.00"), Decimal("130.00"), Decimal("1130.00"))
>>> compare_digital(claim, record).matches
True
>>> typed_pre_tax = digital_claim("26112000000000000042", "20261120", "1000", today)
>>> compare_digital(typed_pre_tax, record)
Comparison(differing=('total_with_tax',), hints=('pre_tax_amount_typed',))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation, RuleViolations, raise_all
from piaotong.lib.invoice_numbers import normalize_number, parse_number
from piaotong.lib.legacy_numbers import LegacyInvoiceInfo, decode_legacy

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("9999999999999999.99")
_FULL_WIDTH = str.maketrans("０１２３４５６７８９．，－／", "0123456789.,-/")
_AMOUNT = re.compile(r"-?\d+(\.\d+)?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日")


# --- Input rules -------------------------------------------------------------------------


def parse_amount(field: str, value: object) -> Decimal:
    """An amount as typed: thousands separators, a currency sign and full-width digits allowed,
    at most two decimals (分).

    >>> parse_amount("total_with_tax", " ￥1，130.5 ")
    Decimal('1130.50')
    >>> parse_amount("total_with_tax", "113.005")
    Traceback (most recent call last):
    ...
    piaotong.lib.errors.RuleViolation: ...
    """
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        text = str(value)
    else:
        text = str(value or "").translate(_FULL_WIDTH).strip().lstrip("¥￥").replace(",", "")
        text = text.replace(" ", "")
    if not text:
        raise RuleViolation(field, "required", _("Enter the amount, e.g. 1130.00."))
    if not _AMOUNT.fullmatch(text):
        raise RuleViolation(
            field,
            "amount_format",
            _("%(given)s is not an amount; type digits with at most two decimals, e.g. 1130.00."),
            {"given": text[:40]},
        )
    amount = Decimal(text)
    if amount != amount.quantize(CENT):
        raise RuleViolation(
            field,
            "amount_decimals",
            _(
                "%(given)s has more than two decimals; invoice amounts are in yuan and fen "
                "(two decimals), e.g. 1130.05."
            ),
            {"given": text[:40]},
        )
    if abs(amount) > MAX_AMOUNT:
        raise RuleViolation(
            field,
            "amount_range",
            _("%(given)s is too large for an invoice amount."),
            {"given": text},
        )
    return amount.quantize(CENT)


def parse_date(field: str, value: object) -> date:
    """A date typed as 2026-11-28, 20261128, 2026/11/28 or 2026年11月28日.

    >>> parse_date("issue_date", "2026年11月8日")
    datetime.date(2026, 11, 8)
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").translate(_FULL_WIDTH).strip()
    if not text:
        raise RuleViolation(field, "required", _("Enter the issue date, e.g. 2026-11-28."))
    if _ISO_DATE.fullmatch(text):
        # The common form, without strptime's cost; an impossible date falls through to the
        # patterns, which refuse it with the same message.
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise RuleViolation(
        field,
        "date_format",
        _("%(given)s is not a date; type it as 2026-11-28 or 20261128."),
        {"given": text[:40]},
    )


def check_issue_date(field: str, issued: date, today: date, years: int) -> None:
    """Refuse dates the platform cannot have: later than today, or older than the window."""
    if issued > today:
        raise RuleViolation(
            field,
            "date_in_future",
            _(
                "The issue date %(date)s is later than today (开票日期晚于今天); check the date "
                "printed on the invoice."
            ),
            {"date": issued.isoformat()},
        )
    try:
        oldest = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        oldest = today.replace(year=today.year - years, day=28)
    if issued < oldest:
        raise RuleViolation(
            field,
            "too_old",
            _(
                "Only invoices of the last %(years)s years can be verified (超过%(years)s年); "
                "this one was issued on %(date)s."
            ),
            {"years": years, "date": issued.isoformat()},
        )


def _collect(checks: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run every check, keep the values, and raise all violations together."""
    values: dict[str, Any] = {}
    violations: list[RuleViolation] = []
    for name, check in checks.items():
        try:
            values[name] = check()
        except RuleViolation as violation:
            violations.append(violation)
        except RuleViolations as many:
            violations.extend(many.violations)
    raise_all(violations)
    return values


@dataclass(frozen=True)
class DigitalClaim:
    """A 数电票 claim: number, issue date, tax-inclusive total (价税合计)."""

    number: str
    issue_date: date
    total_with_tax: Decimal

    @property
    def key(self) -> str:
        """What the daily limit counts by: the invoice's identifier."""
        return self.number

    @property
    def region(self) -> str:
        return self.number[2:4]


@dataclass(frozen=True)
class LegacyClaim:
    """A legacy claim: code, number, date, and the amount or the check code's last six digits."""

    info: LegacyInvoiceInfo
    issue_date: date
    amount: Decimal | None
    check_code_tail: str

    @property
    def code(self) -> str:
        return self.info.code

    @property
    def number(self) -> str:
        return self.info.number

    @property
    def key(self) -> str:
        return f"{self.info.code}:{self.info.number}"


Claim = DigitalClaim | LegacyClaim


def digital_claim(
    number: object, issue_date: object, total_with_tax: object, today: date, years: int = 5
) -> DigitalClaim:
    """Check the three inputs of a 数电票 verification; every problem is reported at once."""

    def checked_date() -> date:
        issued = parse_date("issue_date", issue_date)
        check_issue_date("issue_date", issued, today, years)
        return issued

    values = _collect(
        {
            "number": lambda: str(parse_number(str(number or ""), today)),
            "issue_date": checked_date,
            "total_with_tax": lambda: parse_amount("total_with_tax", total_with_tax),
        }
    )
    return DigitalClaim(values["number"], values["issue_date"], values["total_with_tax"])


def legacy_claim(
    code: object,
    number: object,
    issue_date: object,
    amount: object,
    check_code: object,
    today: date,
    years: int = 5,
) -> LegacyClaim:
    """Check the inputs of a legacy verification: 专票 kinds need the amount excluding tax,
    普票 kinds the last six digits of the check code (a full 20-digit code is accepted too)."""
    info = _collect(
        {
            "info": lambda: _decode(code, number),
            "date": lambda: parse_date("issue_date", issue_date),
        }
    )
    legacy: LegacyInvoiceInfo = info["info"]
    issued: date = info["date"]
    checks: dict[str, Callable[[], Any]] = {
        "date": lambda: check_issue_date("issue_date", issued, today, years)
    }
    if legacy.needs_check_code:
        checks["tail"] = lambda: check_code_tail(check_code, legacy)
    else:
        checks["amount"] = lambda: parse_amount("amount", amount)
    values = _collect(checks)
    return LegacyClaim(legacy, issued, values.get("amount"), values.get("tail", ""))


_VALID_CODE, _VALID_NUMBER = "1100191130", "00000001"


def _decode(code: object, number: object) -> LegacyInvoiceInfo:
    """Decode a code and number; a bad code and a bad number are both reported (the library
    stops at the first, so each is checked beside a well-formed partner first)."""
    code_text, number_text = str(code or ""), str(number or "")
    violations = []
    for pair in ((code_text, _VALID_NUMBER), (_VALID_CODE, number_text)):
        try:
            decode_legacy(*pair)
        except RuleViolation as violation:
            violations.append(violation)
    raise_all(violations)
    return decode_legacy(code_text, number_text)


def check_code_tail(value: object, info: LegacyInvoiceInfo) -> str:
    """The last six digits of the 校验码, from the six digits or from the whole 20-digit code.

    >>> info = decode_legacy("011002100106", "00000001")
    >>> check_code_tail("1234 5678 9012 3456 7890", info)
    '567890'
    """
    text = normalize_number(str(value or "")).replace(" ", "")
    if len(text) in (6, 20) and text.isascii() and text.isdigit():
        return text[-6:]
    raise RuleViolation(
        "check_code",
        "check_code_format",
        _(
            "A %(kind)s is verified with the last 6 digits of its check code (校验码), printed "
            "at the top right; %(given)s was given."
        ),
        {"kind": info.kind_label_zh, "given": text[:40] or "—"},
    )


# --- Comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """The stored facts of an invoice that verification compares against."""

    number: str
    issue_date: date
    kind: str
    total_amount: Decimal
    total_tax: Decimal
    total_with_tax: Decimal
    seller_tax_id: str = ""
    buyer_tax_id: str = ""
    seller_name: str = ""
    buyer_name: str = ""
    check_code: str = ""  # legacy 普票 kinds only

    def value_of(self, field: str) -> str:
        """A field as text, for showing parties the stored value and comparing documents."""
        value = getattr(self, field)
        return value.isoformat() if isinstance(value, date) else str(value)


@dataclass(frozen=True)
class Comparison:
    """Fields of the claim that differ from the record (in a stable order), and hints."""

    differing: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()

    @property
    def matches(self) -> bool:
        return not self.differing


PRE_TAX_TYPED = "pre_tax_amount_typed"
TOTAL_TYPED = "total_with_tax_typed"


def compare_digital(claim: DigitalClaim, record: Record) -> Comparison:
    """Compare a 数电票 claim with its record (the numbers are equal: that is how it was found)."""
    differing, hints = [], []
    if claim.issue_date != record.issue_date:
        differing.append("issue_date")
    if claim.total_with_tax != record.total_with_tax:
        differing.append("total_with_tax")
        # The commonest mistake (reference §9): the amount excluding tax typed for a 数电票.
        if claim.total_with_tax == record.total_amount and record.total_tax:
            hints.append(PRE_TAX_TYPED)
    return Comparison(tuple(differing), tuple(hints))


def compare_legacy(claim: LegacyClaim, record: Record) -> Comparison:
    """Compare a legacy claim: the date and the amount excluding tax or the check code's tail."""
    differing, hints = [], []
    if claim.issue_date != record.issue_date:
        differing.append("issue_date")
    if claim.info.needs_check_code:
        if claim.check_code_tail != record.check_code[-6:]:
            differing.append("check_code")
    elif claim.amount != record.total_amount:
        differing.append("amount")
        if claim.amount == record.total_with_tax and record.total_tax:
            hints.append(TOTAL_TYPED)
    return Comparison(tuple(differing), tuple(hints))


# Fields a document states that are compared with the record, in the order they are reported.
DOCUMENT_FIELDS = (
    "number",
    "kind",
    "issue_date",
    "seller_tax_id",
    "seller_name",
    "buyer_tax_id",
    "buyer_name",
    "total_amount",
    "total_tax",
    "total_with_tax",
)
_MONEY_FIELDS = frozenset({"total_amount", "total_tax", "total_with_tax"})


def compare_document(fields: Mapping[str, str], record: Record) -> tuple[str, ...]:
    """The fields a document states differently from the record; fields it lacks are skipped.

    >>> record = Record("26112000000000000042", date(2026, 11, 20), "digital_special",
    ...                 Decimal("1000.00"), Decimal("130.00"), Decimal("1130.00"), "9111", "9131")
    >>> compare_document({"issue_date": "2026-11-20", "total_with_tax": "1130.0",
    ...                   "buyer_tax_id": "9132"}, record)
    ('buyer_tax_id',)
    """
    return tuple(
        name
        for name in DOCUMENT_FIELDS
        if fields.get(name) not in (None, "") and not _same(name, fields[name], record)
    )


def _same(name: str, stated: str, record: Record) -> bool:
    expected = record.value_of(name)
    try:
        if name in _MONEY_FIELDS:
            return Decimal(stated.strip()) == Decimal(expected)
        if name == "issue_date":
            return parse_date(name, stated) == record.issue_date
    except (InvalidOperation, RuleViolation):
        return False
    return stated.strip() == expected


# --- Words ---------------------------------------------------------------------------------

FIELD_LABELS: dict[str, Promise] = {
    "number": _("invoice number (发票号码)"),
    "code": _("invoice code (发票代码)"),
    "issue_date": _("issue date (开票日期)"),
    "total_with_tax": _("total including tax (价税合计)"),
    "amount": _("amount excluding tax (不含税金额)"),
    "total_amount": _("amount excluding tax (金额)"),
    "total_tax": _("tax (税额)"),
    "check_code": _("last 6 digits of the check code (校验码后六位)"),
    "seller_tax_id": _("seller's taxpayer id (销售方纳税人识别号)"),
    "seller_name": _("seller's name (销售方名称)"),
    "buyer_tax_id": _("buyer's taxpayer id (购买方纳税人识别号)"),
    "buyer_name": _("buyer's name (购买方名称)"),
    "signature": _("signature (签名)"),
    "content": _("signed content (签名内容)"),
    "lines": _("invoice lines (明细)"),
    "total_in_capitals": _("total in words (价税合计大写)"),
    "issuer": _("issuer (开票人)"),
    "remarks": _("remarks (备注)"),
    "kind": _("invoice kind (票种)"),
    "kind_code": _("invoice kind (票种)"),
}


def field_label(name: str) -> str:
    label = FIELD_LABELS.get(name)
    return str(label) if label is not None else name
