"""Pure validation of an invoice draft (发票草稿) before anything is written.

Every rule that does not need the database lives here, collecting all violations at once so a
form or an API client sees every problem in one round trip. Messages name the field and say how
to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from piaotong.invoices.choices import SPECIAL_KINDS, BuyerKind, InvoiceKind
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.money import (
    LineAmounts,
    LineInput,
    Totals,
    check_invoice,
    parse_rate,
    rates_for_taxpayer,
)
from piaotong.lib.taxcodes import check_rate_allowed, format_line_name, get_tax_code
from piaotong.lib.taxid import validate_resident_id, validate_taxpayer_id

MAX_LINES = 2000
T = TypeVar("T")
# Looked up once: `TextChoices.values` builds a new list on every access.
_KINDS = frozenset(InvoiceKind.values)
_BUYER_KINDS = frozenset(BuyerKind.values)
# Markup has no place on an invoice; refusing it keeps names safe in every renderer (PDF, OFD,
# XML, HTML, spreadsheets) instead of trusting each one to escape correctly.
FORBIDDEN_TEXT = re.compile(r"[<>\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class LineDraft:
    tax_code: str
    item_name: str
    tax_rate: str
    amount: Decimal | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    tax: Decimal | None = None
    spec: str = ""
    unit: str = ""
    kind: int = 0
    tax_inclusive: bool = False


@dataclass(frozen=True)
class InvoiceDraft:
    kind: str
    buyer_name: str
    lines: Sequence[LineDraft]
    buyer_kind: str = BuyerKind.ORGANISATION
    buyer_tax_id: str = ""
    buyer_address: str = ""
    buyer_bank: str = ""
    buyer_email: str = ""
    buyer_phone: str = ""
    remarks: str = ""


@dataclass(frozen=True)
class CheckedLine:
    draft: LineDraft
    printed_name: str
    amounts: LineAmounts


@dataclass(frozen=True)
class CheckedInvoice:
    """A draft that passed every pure rule, with normalised identifiers and computed amounts."""

    draft: InvoiceDraft
    buyer_tax_id: str
    lines: list[CheckedLine]
    totals: Totals


@dataclass
class _Collector:
    violations: list[RuleViolation] = field(default_factory=list)
    prefix: str = ""

    def run(self, check: Callable[..., T], *args: Any) -> T | None:
        """`check(*args)`, or None with its violations collected (nested under `prefix`)."""
        prefix = self.prefix
        try:
            return check(*args)
        except RuleViolation as violation:
            self.violations.append(violation.at(prefix) if prefix else violation)
        except RuleViolations as many:
            self.violations.extend(v.at(prefix) if prefix else v for v in many.violations)
        return None


def check_text(field_name: str, value: str, max_length: int, required: bool = False) -> str:
    """Strip and check one free-text field: required, length, no markup or control characters.

    >>> check_text("remarks", "  合同号 A-1 ", 100)
    '合同号 A-1'
    >>> check_text("buyer_name", "<script>", 100)
    Traceback (most recent call last):
    ...
    piaotong.lib.errors.RuleViolation: ...
    """
    value = value.strip()
    if required and not value:
        raise RuleViolation(field_name, "required", _("This field is required."))
    if len(value) > max_length:
        raise RuleViolation(
            field_name,
            "too_long",
            _("Too long: %(length)s characters, at most %(max)s are allowed."),
            {"length": len(value), "max": max_length},
        )
    if FORBIDDEN_TEXT.search(value):
        raise RuleViolation(
            field_name,
            "forbidden_characters",
            _("Angle brackets (< >) and control characters are not allowed; remove them."),
        )
    return value


def check_email(field_name: str, value: str) -> str:
    """Strip and check an optional email address, for the web form and the API alike.

    The model field's validator runs only in `full_clean`, which the issuing path skips.

    >>> check_email("buyer_email", " zhang@example.com ")
    'zhang@example.com'
    >>> check_email("buyer_email", "zhang@")
    Traceback (most recent call last):
    ...
    piaotong.lib.errors.RuleViolation: ...
    """
    value = check_text(field_name, value, 254)
    if value:
        try:
            validate_email(value)
        except ValidationError:
            raise RuleViolation(
                field_name,
                "invalid_email",
                _("Enter a valid email address, e.g. name@example.com."),
            ) from None
    return value


def _check_buyer_tax_id(draft: InvoiceDraft) -> str:
    tax_id = draft.buyer_tax_id.strip().upper()
    if not tax_id:
        if draft.kind in SPECIAL_KINDS:
            raise RuleViolation(
                "buyer_tax_id",
                "required_for_special",
                _(
                    "A special VAT invoice (专票) needs the buyer's taxpayer id; enter it or issue an ordinary invoice."
                ),
            )
        if draft.buyer_kind == BuyerKind.ORGANISATION:
            raise RuleViolation(
                "buyer_tax_id",
                "required_for_organisation",
                _(
                    "An organisation buyer needs a taxpayer id; for a natural person choose 'natural person'."
                ),
            )
        return ""
    try:
        if draft.buyer_kind == BuyerKind.PERSON:
            return validate_resident_id(tax_id)
        return validate_taxpayer_id(tax_id)
    except RuleViolation as violation:
        raise violation.renamed("buyer_tax_id") from None


@dataclass(frozen=True)
class _LineFacts:
    """What the non-arithmetic checks of one line establish."""

    printed_name: str
    amounts_input: LineInput


def _check_line(line: LineDraft, taxpayer_kind: str) -> _LineFacts:
    collector = _Collector()
    name = collector.run(check_text, "item_name", line.item_name, 90, True)
    collector.run(check_text, "spec", line.spec, 40)
    collector.run(check_text, "unit", line.unit, 20)
    tax_code = collector.run(get_tax_code, line.tax_code.strip())
    rate = collector.run(parse_rate, line.tax_rate)
    if rate is not None and tax_code is not None:
        collector.run(check_rate_allowed, tax_code, rate)
    if rate is not None and rate.key not in rates_for_taxpayer(taxpayer_kind):  # type: ignore[arg-type]
        collector.violations.append(
            RuleViolation(
                "tax_rate",
                "rate_not_for_taxpayer",
                _("The rate %(rate)s is not available to this seller's taxpayer kind."),
                {"rate": rate.label_zh},
            )
        )
    if collector.violations:
        raise RuleViolations(collector.violations)
    assert rate is not None and tax_code is not None and name is not None
    amounts_input = LineInput(
        rate=rate,
        amount=line.amount,
        quantity=line.quantity,
        unit_price=line.unit_price,
        tax=line.tax,
        tax_inclusive=line.tax_inclusive,
        kind=line.kind,
    )
    return _LineFacts(format_line_name(tax_code.short_name, name), amounts_input)


def _check_lines(
    lines: Sequence[LineDraft], taxpayer_kind: str, collector: _Collector
) -> list[_LineFacts | None]:
    if not lines:
        collector.violations.append(RuleViolation("lines", "no_lines", _("Add at least one line.")))
    if len(lines) > MAX_LINES:
        collector.violations.append(
            RuleViolation(
                "lines",
                "too_many_lines",
                _("Too many lines: %(count)s; at most %(max)s per invoice."),
                {"count": len(lines), "max": MAX_LINES},
            )
        )
        return []
    facts: list[_LineFacts | None] = []
    for index, line in enumerate(lines):
        collector.prefix = f"lines.{index}"
        facts.append(collector.run(_check_line, line, taxpayer_kind))
    collector.prefix = ""
    return facts


def check_draft(draft: InvoiceDraft, taxpayer_kind: str) -> CheckedInvoice:
    """Check a draft completely; raise `RuleViolations` listing every problem found."""
    collector = _Collector()
    if draft.kind not in _KINDS:
        collector.violations.append(
            RuleViolation(
                "kind", "unknown_kind", _("Unknown invoice kind; choose 数电专票 or 数电普票.")
            )
        )
    if draft.buyer_kind not in _BUYER_KINDS:
        collector.violations.append(
            RuleViolation(
                "buyer_kind", "unknown_buyer_kind", _("Buyer kind must be organisation or person.")
            )
        )
    collector.run(check_text, "buyer_name", draft.buyer_name, 100, True)
    collector.run(check_text, "buyer_address", draft.buyer_address, 200)
    collector.run(check_text, "buyer_bank", draft.buyer_bank, 200)
    collector.run(check_text, "buyer_phone", draft.buyer_phone, 20)
    collector.run(check_email, "buyer_email", draft.buyer_email)
    collector.run(check_text, "remarks", draft.remarks, 230)
    buyer_tax_id = collector.run(_check_buyer_tax_id, draft)
    facts = _check_lines(draft.lines, taxpayer_kind, collector)
    if collector.violations or any(f is None for f in facts):
        raise RuleViolations(collector.violations)
    checked_facts = [f for f in facts if f is not None]
    result = collector.run(check_invoice, [f.amounts_input for f in checked_facts])
    if result is None:
        raise RuleViolations(collector.violations)
    amounts, totals = result
    lines = [
        CheckedLine(line, f.printed_name, a)
        for line, f, a in zip(draft.lines, checked_facts, amounts, strict=True)
    ]
    return CheckedInvoice(draft, buyer_tax_id or "", lines, totals)
