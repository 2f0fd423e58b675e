"""What a verification answers (查验结果), in both languages, for pages, the API and exports.

Results: 一致 (match) with the invoice's details and status mark (状态标志); 不一致 (mismatch)
naming which fields differ, with the stored values only for a party (the seller's or the
buyer's members); 查无此票 (not found) for invoices this node has never seen, built in one place
(`not_found_result`) so the exchange's trace can attach its verdict; and refusals (daily limit,
throttling) that say when to come back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from piaotong.invoices.choices import InvoiceKind
from piaotong.invoices.models import Invoice
from piaotong.lib.money import RATES
from piaotong.lib.regions import get_region
from piaotong.verification.choices import InputKind, Outcome
from piaotong.verification.queries import LineRow
from piaotong.verification.rules import (
    PRE_TAX_TYPED,
    TOTAL_TYPED,
    Claim,
    DigitalClaim,
    LegacyClaim,
    Record,
    field_label,
)


@dataclass(frozen=True)
class Hint:
    """Advice attached to an answer: a stable code and a message with its parameters."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        message = HINTS[self.code]
        return str(message) % self.params if self.params else str(message)


HINTS: dict[str, Promise] = {
    PRE_TAX_TYPED: _(
        "The amount you typed equals this invoice's amount excluding tax. A 数电票 is verified "
        "with the total including tax (价税合计): type the amount printed after 价税合计（小写）."
    ),
    TOTAL_TYPED: _(
        "The amount you typed equals the total including tax. This kind of legacy invoice is "
        "verified with the amount excluding tax (不含税金额)."
    ),
    "other_region": _(
        "Digits 3-4 of the number say the invoice was issued in %(region)s, while this node "
        "serves %(here)s. Invoices of other regions reach this node through the exchange; if "
        "it was issued only minutes ago, try again later, or verify it with the platform of "
        "%(region)s."
    ),
    "legacy_not_held": _(
        "This node records 数电 invoices. Legacy invoices (税控发票) of %(area)s are verified "
        "with the tax bureau that issued their invoice code."
    ),
    "check_inputs": _(
        "Check each digit of the number and the date against the invoice; the number has no "
        "check digit, so a typing error gives 查无此票."
    ),
    "signature_invalid": _(
        "The file's signature does not match its content: the file was altered after it was "
        "issued. Ask the seller for the original file."
    ),
    "signature_absent": _(
        "The file carries no signature this node could check; only its content was compared "
        "with the record."
    ),
    "red_letter": _("This invoice has been reversed by red-letter invoice(s) (红字发票)."),
}


@dataclass(frozen=True)
class LineDetails:
    name: str
    spec: str
    unit: str
    quantity: str
    unit_price: str
    amount: Decimal
    tax_rate: str
    tax: Decimal


@dataclass(frozen=True)
class InvoiceDetails:
    """The invoice as a matching verification shows it (查验明细)."""

    number: str
    kind: str
    issue_date: date
    seller_name: str
    seller_tax_id: str
    buyer_name: str
    buyer_tax_id: str
    total_amount: Decimal
    total_tax: Decimal
    total_with_tax: Decimal
    remarks: str
    status_mark_zh: str
    status_mark_en: str
    lines: tuple[LineDetails, ...] = ()

    @property
    def kind_label(self) -> str:
        return str(InvoiceKind(self.kind).label)

    @property
    def status_mark(self) -> str:
        english = (translation.get_language() or "").startswith("en")
        return self.status_mark_en if english else self.status_mark_zh


@dataclass
class VerificationResult:
    """One answer. `invoice` is set for a match; `stored` (values of the differing fields) only
    for a mismatch asked by a party. `trace` is reserved for the exchange's not-found verdict."""

    outcome: Outcome
    input_kind: InputKind
    identifier: str = ""
    differing: tuple[str, ...] = ()
    hints: tuple[Hint, ...] = ()
    invoice: InvoiceDetails | None = None
    stored: dict[str, str] = field(default_factory=dict)
    is_party: bool = False
    checks_today: int | None = None
    daily_limit: int | None = None
    retry_after: int | None = None
    signature: str = ""  # files: "valid", "invalid", "absent"; "" for typed input
    trace: Any = None

    @property
    def message(self) -> str:
        return headline(self)

    @property
    def differing_labels(self) -> list[str]:
        return [field_label(name) for name in self.differing]

    @property
    def differing_pairs(self) -> list[tuple[str, str]]:
        return [(name, field_label(name)) for name in self.differing]

    @property
    def hint_texts(self) -> list[str]:
        return [hint.text() for hint in self.hints]


def headline(result: VerificationResult) -> str:
    """The one-sentence answer in the active language."""
    outcome = result.outcome
    if outcome == Outcome.MATCH:
        assert result.invoice is not None
        return str(
            _("一致 — the invoice matches this platform's record. Status: %(mark)s.")
            % {"mark": result.invoice.status_mark}
        )
    if outcome == Outcome.MISMATCH:
        return str(
            _("不一致 — the invoice exists, but these fields differ from the record: %(fields)s.")
            % {"fields": "、".join(result.differing_labels)}
        )
    if outcome == Outcome.NOT_FOUND:
        return str(_("查无此票 — no invoice with this number is known to this platform."))
    if outcome == Outcome.DAILY_LIMIT:
        return str(
            _(
                "超过当天查验次数 — this invoice has already been checked %(limit)s times today, "
                "the most allowed per day. Try again after midnight (Beijing time)."
            )
            % {"limit": result.daily_limit}
        )
    if outcome == Outcome.THROTTLED:
        return str(
            _(
                "Too many checks from your connection or account; wait %(seconds)s seconds "
                "and try again."
            )
            % {"seconds": result.retry_after}
        )
    return str(_("The input is not valid; correct it and try again."))


def _fine(value: Decimal | None) -> str:
    return "" if value is None else f"{value.normalize():f}"


def details_of(invoice: Invoice, lines: Iterable[LineRow]) -> InvoiceDetails:
    """What a match shows: the invoice and its lines (read with it, `queries.issued_invoice`)."""
    zh, en = invoice.status_mark
    shown = tuple(
        LineDetails(
            name=line.printed_name,
            spec=line.spec,
            unit=line.unit,
            quantity=_fine(line.quantity),
            unit_price=_fine(line.unit_price),
            amount=line.amount,
            tax_rate=RATES[line.tax_rate].label_zh if line.tax_rate in RATES else line.tax_rate,
            tax=line.tax,
        )
        for line in lines
    )
    assert invoice.number is not None and invoice.issue_date is not None
    return InvoiceDetails(
        number=invoice.number,
        kind=invoice.kind,
        issue_date=invoice.issue_date,
        seller_name=invoice.seller_name,
        seller_tax_id=invoice.seller_tax_id,
        buyer_name=invoice.buyer_name,
        buyer_tax_id=invoice.buyer_tax_id,
        total_amount=invoice.total_amount,
        total_tax=invoice.total_tax,
        total_with_tax=invoice.total_with_tax,
        remarks=invoice.remarks,
        status_mark_zh=zh,
        status_mark_en=en,
        lines=shown,
    )


def record_of(invoice: Invoice) -> Record:
    assert invoice.number is not None and invoice.issue_date is not None
    return Record(
        number=invoice.number,
        issue_date=invoice.issue_date,
        kind=invoice.kind,
        total_amount=invoice.total_amount,
        total_tax=invoice.total_tax,
        total_with_tax=invoice.total_with_tax,
        seller_tax_id=invoice.seller_tax_id,
        buyer_tax_id=invoice.buyer_tax_id,
        seller_name=invoice.seller_name,
        buyer_name=invoice.buyer_name,
    )


def stored_values(record: Record, differing: tuple[str, ...]) -> dict[str, str]:
    """The record's values of the differing fields (shown to parties only)."""
    names = {"amount": "total_amount"}
    return {
        name: record.value_of(names.get(name, name))
        for name in differing
        if hasattr(record, names.get(name, name))
    }


def not_found_result(
    claim: Claim | None,
    input_kind: InputKind,
    identifier: str,
    *,
    checks_today: int | None = None,
    daily_limit: int | None = None,
) -> VerificationResult:
    """查无此票, with what this node can say about why. The one place not-found answers are made:
    the exchange's trace (为什么找不到这张发票) will attach its verdict here."""
    hints: list[Hint] = []
    if isinstance(claim, DigitalClaim):
        here = settings.PIAOTONG_REGION
        if claim.region != here:
            hints.append(
                Hint(
                    "other_region",
                    {"region": _region_name(claim.region), "here": _region_name(here)},
                )
            )
        hints.append(Hint("check_inputs"))
    elif isinstance(claim, LegacyClaim):
        region = claim.info.region
        area = (region.name_zh if region else "") or claim.code[:4]
        hints.append(Hint("legacy_not_held", {"area": area}))
    # --- The exchange's not-found trace (为什么找不到这张发票), as the public sees it: its
    # verdict, explanation and evidence as JSON (exchange.trace_facts.trace_claim).
    trace = None
    if isinstance(claim, (DigitalClaim, LegacyClaim)):
        from piaotong.exchange.trace_facts import trace_claim
        from piaotong.exchange.trace_remote import ask_nodes

        text = claim.number if isinstance(claim, DigitalClaim) else f"{claim.code} {claim.number}"
        amount = claim.total_with_tax if isinstance(claim, DigitalClaim) else claim.amount
        trace = trace_claim(text, claim.issue_date, amount, ask_nodes)
    # --- end of the trace
    return VerificationResult(
        outcome=Outcome.NOT_FOUND,
        input_kind=input_kind,
        identifier=identifier,
        hints=tuple(hints),
        checks_today=checks_today,
        daily_limit=daily_limit,
        trace=trace,
    )


def _region_name(code: str) -> str:
    region = get_region(code)
    if region is None:
        return code
    return f"{region.name_zh} ({code})"


# --- JSON ------------------------------------------------------------------------------------


def _both(render: Any) -> dict[str, str]:
    """A text in the request's language and in both; the request's is one of the two (the
    project has no other), so it is rendered twice, not three times."""
    with translation.override("zh-hans"):
        zh = str(render())
    with translation.override("en"):
        en = str(render())
    current = translation.get_language() or ""
    if current == "en":
        message = en
    elif current == "zh-hans":
        message = zh
    else:
        message = str(render())
    return {"message": message, "message_zh": zh, "message_en": en}


def result_json(result: VerificationResult) -> dict[str, Any]:
    """The API's answer: stable codes, and every text in the request's language and in both."""
    body: dict[str, Any] = {
        "outcome": str(result.outcome),
        "input_kind": str(result.input_kind),
        "identifier": result.identifier,
        **_both(lambda: headline(result)),
        "differing": [{"field": name, **_label_json(name)} for name in result.differing],
        "hints": [{"code": hint.code, **_both(hint.text)} for hint in result.hints],
        "checks_today": result.checks_today,
        "daily_limit": result.daily_limit,
        "retry_after": result.retry_after,
    }
    if result.signature:
        body["signature"] = result.signature
    if result.stored:
        body["stored"] = result.stored
    if result.invoice is not None:
        body["invoice"] = invoice_json(result.invoice)
    if result.trace is not None:
        body["trace"] = result.trace
    return body


def _label_json(name: str) -> dict[str, str]:
    with translation.override("zh-hans"):
        zh = field_label(name)
    with translation.override("en"):
        en = field_label(name)
    return {"label_zh": zh, "label_en": en}


def invoice_json(details: InvoiceDetails) -> dict[str, Any]:
    return {
        "number": details.number,
        "kind": details.kind,
        "issue_date": details.issue_date.isoformat(),
        "seller": {"name": details.seller_name, "tax_id": details.seller_tax_id},
        "buyer": {"name": details.buyer_name, "tax_id": details.buyer_tax_id},
        "total_amount": str(details.total_amount),
        "total_tax": str(details.total_tax),
        "total_with_tax": str(details.total_with_tax),
        "remarks": details.remarks,
        "status_mark": {"zh": details.status_mark_zh, "en": details.status_mark_en},
        "lines": [
            {
                "name": line.name,
                "spec": line.spec,
                "unit": line.unit,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": str(line.amount),
                "tax_rate": line.tax_rate,
                "tax": str(line.tax),
            }
            for line in details.lines
        ],
    }
