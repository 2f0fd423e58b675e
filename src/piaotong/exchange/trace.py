"""The not-found trace (为什么找不到这张发票): what was asked, and the verdict over the facts.

Terms: the *input* is what the user has of the invoice: a 20-digit 数电 number, a legacy code and
number (发票代码 + 发票号码), or an official QR text (from a picture or typed), optionally with the
issue date and amount they typed. The *facts* are what this node and the nodes it asked know
about it (`trace_facts.gather` collects them). The *verdict* (结论) is one `Verdict` with a plain
explanation in zh-Hans and English and an evidence timeline (证据时间线).

This module is pure: parsing the input, the near-miss candidates, field comparison and the
verdict are functions over dataclasses, tested without a database.

>>> parse_trace_input("26112000000000000042", today=date(2026, 11, 28)).region
'11'
>>> sorted(near_miss_numbers("26112000000000000042"))[:2]
['06112000000000000042', '16112000000000000042']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation
from piaotong.lib.invoice_numbers import is_valid_number, normalize_number, parse_number
from piaotong.lib.legacy_numbers import LegacyInvoiceInfo, decode_legacy
from piaotong.lib.qr import parse_qr
from piaotong.lib.regions import get_region

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Verdict(StrEnum):
    FOUND = "FOUND"
    MALFORMED = "MALFORMED"
    NOT_YET_SYNCED = "NOT_YET_SYNCED"
    PENDING_AT_ISSUER = "PENDING_AT_ISSUER"
    QUARANTINED = "QUARANTINED"
    PARKED = "PARKED"
    FIELD_MISMATCH = "FIELD_MISMATCH"
    NEAR_MISS = "NEAR_MISS"
    OUT_OF_SCOPE = "OUT_OF_SCOPE"
    NOT_A_PARTY = "NOT_A_PARTY"
    VOIDED = "VOIDED"
    RED_FLUSHED = "RED_FLUSHED"
    NOT_FOUND_ANYWHERE = "NOT_FOUND_ANYWHERE"


# --- The input ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceInput:
    """What the user gave, parsed. `amount_is_total` is True when the amount is known to be the
    tax-inclusive total (a 数电 QR code), False when known to exclude tax (a legacy QR code),
    None when typed by hand."""

    form: str  # "number", "legacy" or "qr"
    number: str
    invoice_code: str = ""
    issue_date: date | None = None
    amount: Decimal | None = None
    amount_is_total: bool | None = None
    year: int | None = None
    region: str = ""
    channel: str = ""
    legacy: LegacyInvoiceInfo | None = None

    @property
    def is_legacy(self) -> bool:
        return self.legacy is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "number": self.number,
            "invoice_code": self.invoice_code,
            "issue_date": self.issue_date.isoformat() if self.issue_date else None,
            "amount": str(self.amount) if self.amount is not None else None,
            "year": self.year,
            "region": self.region,
            "channel": self.channel,
        }


class MalformedInput(ValueError):
    """The input cannot name an invoice; each violation says which part and why."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.text()}" for v in violations))


_PAIR = re.compile(r"^\s*(\d{10}|\d{12})\s*[\s/,，-]\s*(\d{8})\s*$")


def parse_trace_input(
    text: str,
    *,
    invoice_code: str = "",
    issue_date: str | date | None = None,
    amount: str | Decimal | None = None,
    today: date,
) -> TraceInput:
    """Read what the user has of an invoice, or raise MalformedInput naming each bad part.

    >>> parse_trace_input("011001900111 00000001", today=date(2026, 1, 1)).legacy.kind
    'electronic_ordinary'
    >>> try:
    ...     parse_trace_input("2611200000000000004", today=date(2026, 1, 1))
    ... except MalformedInput as error:
    ...     print(error.violations[0].field, error.violations[0].code)
    number number_length
    """
    typed_date, typed_amount, problems = _typed_extras(issue_date, amount, today)
    try:
        found = _parse_identity(normalize_number(text), invoice_code.strip(), today)
    except RuleViolation as violation:
        raise MalformedInput([violation, *problems]) from None
    if problems:
        raise MalformedInput(problems)
    if found.form == "qr":
        return found
    return TraceInput(**{**found.__dict__, "issue_date": typed_date, "amount": typed_amount})


def _parse_identity(text: str, code: str, today: date) -> TraceInput:
    if not text:
        raise RuleViolation(
            "number",
            "required",
            _("Give the invoice number, the code and number, or the QR code's text or picture."),
        )
    if "," in text or "，" in text:
        return _from_qr(text, today)
    pair = _PAIR.match(text)
    if pair:
        code, text = pair.group(1), pair.group(2)
    if code or len(text) == 8:
        if not code:
            raise RuleViolation(
                "invoice_code",
                "legacy_code_missing",
                _(
                    "%(number)s has 8 digits: it is the number of a legacy (税控) invoice, which is "
                    "identified together with its 10- or 12-digit invoice code (发票代码). Give "
                    "the code too."
                ),
                {"number": text},
            )
        info = decode_legacy(code, text)
        return TraceInput(
            "legacy", info.number, info.code, year=info.year, region=_region(info), legacy=info
        )
    parsed = parse_number(text, today)
    return TraceInput(
        "number", str(parsed), year=parsed.year, region=parsed.region, channel=parsed.channel
    )


def _region(info: LegacyInvoiceInfo) -> str:
    return info.region.code if info.region else ""


def _from_qr(text: str, today: date) -> TraceInput:
    qr = parse_qr(text, today)
    if not qr.is_digital:
        info = decode_legacy(qr.invoice_code, qr.number)
        return TraceInput(
            "qr",
            info.number,
            info.code,
            qr.issue_date,
            qr.amount,
            amount_is_total=False,
            year=info.year,
            region=_region(info),
            legacy=info,
        )
    parsed = parse_number(qr.number, today)
    return TraceInput(
        "qr",
        qr.number,
        issue_date=qr.issue_date,
        amount=qr.amount,
        amount_is_total=True,
        year=parsed.year,
        region=parsed.region,
        channel=parsed.channel,
    )


def _typed_extras(
    issue_date: str | date | None, amount: str | Decimal | None, today: date
) -> tuple[date | None, Decimal | None, list[RuleViolation]]:
    problems: list[RuleViolation] = []
    typed_date = issue_date if isinstance(issue_date, date) else None
    if isinstance(issue_date, str) and issue_date.strip():
        raw = issue_date.strip().replace("/", "-")
        try:
            typed_date = (
                datetime.strptime(raw, "%Y%m%d").date()
                if raw.isdigit()
                else date.fromisoformat(raw)
            )
        except ValueError:
            problems.append(
                RuleViolation(
                    "issue_date",
                    "date_format",
                    _("%(value)s is not a date; write the issue date as 2026-01-05 or 20260105."),
                    {"value": issue_date.strip()[:20]},
                )
            )
    if typed_date is not None and typed_date > today:
        problems.append(
            RuleViolation(
                "issue_date",
                "future_date",
                _("The issue date %(value)s is later than today; check it."),
                {"value": typed_date.isoformat()},
            )
        )
    typed_amount = amount if isinstance(amount, Decimal) else None
    if isinstance(amount, str) and amount.strip():
        try:
            typed_amount = Decimal(amount.strip().replace(",", "").replace("¥", ""))
            if not typed_amount.is_finite() or typed_amount != typed_amount.quantize(
                Decimal("0.01")
            ):
                raise InvalidOperation
        except (InvalidOperation, ValueError):
            typed_amount = None
            problems.append(
                RuleViolation(
                    "amount",
                    "amount_format",
                    _(
                        "%(value)s is not an amount in yuan with at most two decimals, e.g. 1130.00."
                    ),
                    {"value": amount.strip()[:30]},
                )
            )
    return typed_date, typed_amount, problems


# --- Near misses ----------------------------------------------------------------------------


def near_miss_numbers(number: str) -> set[str]:
    """Valid 20-digit numbers one digit off `number`, or with two adjacent digits swapped: the
    two commonest typing errors. At most 199 candidates, looked up by the unique number index.

    >>> "26112000000000000024" in near_miss_numbers("26112000000000000042")
    True
    >>> len(near_miss_numbers("26112000000000000042")) <= 199
    True
    """
    digits = list(number)
    found: set[str] = set()
    for position, current in enumerate(digits):
        for replacement in "0123456789":
            if replacement != current:
                found.add("".join([*digits[:position], replacement, *digits[position + 1 :]]))
    for position in range(len(digits) - 1):
        if digits[position] != digits[position + 1]:
            swapped = digits.copy()
            swapped[position], swapped[position + 1] = swapped[position + 1], swapped[position]
            found.add("".join(swapped))
    return {candidate for candidate in found if is_valid_number(candidate)}


# --- The facts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldInvoice:
    """An invoice as this node holds it (or as another node described it)."""

    number: str
    kind: str
    status: str
    issue_date: date | None
    total_amount: Decimal
    total_with_tax: Decimal
    seller_name: str
    seller_tax_id: str
    buyer_name: str
    buyer_tax_id: str
    status_label: str = ""
    authority_flag: str = ""

    @property
    def seller_region(self) -> str:
        return self.number[2:4]

    def as_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "kind": self.kind,
            "status": self.status,
            "status_label": self.status_label,
            "authority_flag": self.authority_flag,
            "issue_date": self.issue_date.isoformat() if self.issue_date else None,
            "total_amount": str(self.total_amount),
            "total_with_tax": str(self.total_with_tax),
            "seller": {"name": self.seller_name, "tax_id": self.seller_tax_id},
            "buyer": {"name": self.buyer_name, "tax_id": self.buyer_tax_id},
        }


@dataclass(frozen=True)
class NodeAnswer:
    """What another node answered to "do you have invoice N" (or that it did not answer)."""

    node_id: str
    role: str
    region: str
    reached: bool
    has_invoice: bool = False
    status: str = ""
    buyer_region: str = ""
    committed_at: datetime | None = None
    published_at: datetime | None = None
    stream_seq: int | None = None
    visible: bool = False
    relay_state: str = ""
    relay_since: datetime | None = None
    error: str = ""

    @property
    def is_pending(self) -> bool:
        return self.has_invoice and self.committed_at is not None and self.published_at is None


@dataclass(frozen=True)
class Step:
    """One line of the evidence timeline."""

    at: datetime | None
    step: str  # committed, published, applied, parked, quarantined, reconciled, asked
    node: str
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat() if self.at else None,
            "step": self.step,
            "node": self.node,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Lag:
    """How far behind this node's consumer is, from its status rows."""

    consumer_state: str
    pending: int | None
    last_lag_seconds: float | None
    apply_rate: float | None  # events applied per second over the last minute

    def expected_seconds(self) -> float | None:
        """Seconds until the backlog is applied, if the consumer is running."""
        if self.consumer_state != "running":
            return None
        base = self.last_lag_seconds or 0.0
        if self.pending and self.apply_rate:
            return base + self.pending / self.apply_rate
        return base


@dataclass(frozen=True)
class Held:
    """A parked or quarantined event of the invoice at this node."""

    reason: str
    reason_label: str | Promise
    detail: str
    at: datetime | None
    kind: str


@dataclass
class TraceFacts:
    query: TraceInput
    node_id: str
    node_region: str
    is_hub: bool
    now: datetime
    local: HeldInvoice | None = None
    visible: bool = False
    hidden: bool = False  # it exists (here or elsewhere) but the user is not a party
    answers: list[NodeAnswer] = field(default_factory=list)
    parked: list[Held] = field(default_factory=list)
    quarantined: list[Held] = field(default_factory=list)
    near_misses: list[str] = field(default_factory=list)
    lag: Lag | None = None
    home_relay_state: str = ""
    home_relay_since: datetime | None = None
    timeline: list[Step] = field(default_factory=list)


@dataclass(frozen=True)
class Explanation:
    """A translatable message and its parameters, rendered in both languages."""

    message: str | Promise
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, language: str) -> str:
        with translation.override(language):
            params = {k: str(v) if isinstance(v, Promise) else v for k, v in self.params.items()}
            return str(self.message) % params if params else str(self.message)

    def __str__(self) -> str:  # nested in another explanation: the language being rendered
        return self.render(translation.get_language() or "en")


@dataclass(frozen=True)
class TraceResult:
    verdict: Verdict
    explanation: Explanation
    timeline: list[Step] = field(default_factory=list)
    invoice: HeldInvoice | None = None
    near_misses: list[str] = field(default_factory=list)
    region_to_ask: str = ""
    expected_arrival: datetime | None = None
    mismatches: list[str] = field(default_factory=list)
    query: TraceInput | None = None
    violations: list[RuleViolation] = field(default_factory=list)

    @property
    def explanation_zh(self) -> str:
        return self.explanation.render("zh-hans")

    @property
    def explanation_en(self) -> str:
        return self.explanation.render("en")

    def as_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "explanation": {"zh": self.explanation_zh, "en": self.explanation_en},
            "timeline": [step.as_json() for step in self.timeline],
            "invoice": self.invoice.as_json() if self.invoice else None,
            "near_misses": self.near_misses,
            "region_to_ask": self.region_to_ask,
            "expected_arrival": self.expected_arrival.isoformat()
            if self.expected_arrival
            else None,
            "mismatches": self.mismatches,
            "input": self.query.as_json() if self.query else None,
            "problems": [
                {
                    "field": v.field,
                    "code": v.code,
                    "message_zh": Explanation(v.message, v.params).render("zh-hans"),
                    "message_en": Explanation(v.message, v.params).render("en"),
                }
                for v in self.violations
            ],
        }


# --- The verdict ---------------------------------------------------------------------------------


def malformed(error: MalformedInput) -> TraceResult:
    first = error.violations[0]
    return TraceResult(
        Verdict.MALFORMED,
        Explanation(
            _("The input cannot name an invoice (%(field)s): %(problem)s"),
            {"field": first.field, "problem": Explanation(first.message, first.params)},
        ),
        violations=error.violations,
    )


def region_name(code: str) -> str:
    region = get_region(code) if code else None
    return f"{region.name_zh} ({code})" if region else code or "?"


def compare_fields(query: TraceInput, held: HeldInvoice) -> list[tuple[str, Explanation]]:
    """Which typed facts disagree with the invoice held, and why, in words.

    A 数电票 is verified with its tax-inclusive total (价税合计); the pre-tax amount, which legacy
    专票 asked for, is the commonest mismatch (china-einvoice.md §9).
    """
    found: list[tuple[str, Explanation]] = []
    if query.issue_date is not None and held.issue_date and query.issue_date != held.issue_date:
        found.append(
            (
                "issue_date",
                Explanation(
                    _("the issue date typed (%(typed)s) is not the invoice's (%(held)s)"),
                    {"typed": query.issue_date.isoformat(), "held": held.issue_date.isoformat()},
                ),
            )
        )
    if query.amount is not None and query.amount != held.total_with_tax:
        if query.amount == held.total_amount:
            message = _(
                "%(typed)s is the amount before tax; a 数电票 is checked with its tax-inclusive "
                "total (价税合计), %(total)s"
            )
        else:
            message = _("the amount typed (%(typed)s) is not the invoice's total (%(total)s)")
        found.append(
            ("amount", Explanation(message, {"typed": query.amount, "total": held.total_with_tax}))
        )
    return found


def decide(facts: TraceFacts) -> TraceResult:
    """The verdict over the facts, most specific first."""
    query = facts.query
    if query.is_legacy:
        return _legacy(facts)
    if facts.local is not None:
        return _held_here(facts, facts.local)
    home = _answer_with_invoice(facts)
    if facts.hidden or (home is not None and not home.visible):
        return _result(facts, Verdict.NOT_A_PARTY, _not_a_party())
    if facts.quarantined:
        return _quarantined(facts, facts.quarantined[0])
    if facts.parked:
        return _parked(facts, facts.parked[0])
    if home is not None:
        return _held_elsewhere(facts, home)
    if facts.near_misses:
        return _result(
            facts,
            Verdict.NEAR_MISS,
            Explanation(
                _(
                    "No invoice %(number)s exists, but %(candidates)s differ from it by one digit "
                    "or two swapped digits and match the date and amount given. Check the number "
                    "you typed."
                ),
                {"number": query.number, "candidates": ", ".join(facts.near_misses)},
            ),
            near_misses=list(facts.near_misses),
        )
    if _out_of_scope(facts, buyer_region="") and not _issuer_says_unknown(facts):
        return _out_of_scope_result(facts)
    return _not_found(facts)


def _issuer_says_unknown(facts: TraceFacts) -> bool:
    """The node of the number's region answered, and does not have it: whatever this node
    receives, nobody issued it (better told than "ask region R", which would say the same)."""
    return any(
        a.reached and not a.has_invoice and a.role != "hub" and a.region == facts.query.region
        for a in facts.answers
    )


def _result(facts: TraceFacts, verdict: Verdict, text: Explanation, **extra: Any) -> TraceResult:
    return TraceResult(verdict, text, list(facts.timeline), query=facts.query, **extra)


def _not_a_party() -> Explanation:
    return Explanation(
        _(
            "This invoice exists, but none of your organisations is its seller or buyer, so "
            "nothing more about it can be shown to you."
        )
    )


def _legacy(facts: TraceFacts) -> TraceResult:
    info = facts.query.legacy
    assert info is not None
    return _result(
        facts,
        Verdict.OUT_OF_SCOPE,
        Explanation(
            _(
                "%(code)s %(number)s is a legacy (税控) %(kind)s of %(region)s. This platform holds "
                "数电 invoices only; legacy invoices are held by the tax bureau of their region: "
                "verify it on the national verification platform or ask the bureau (12366)."
            ),
            {
                "code": info.code,
                "number": info.number,
                "kind": info.kind_label_zh,
                "region": region_name(facts.query.region),
            },
        ),
        region_to_ask=facts.query.region,
    )


def _held_here(facts: TraceFacts, held: HeldInvoice) -> TraceResult:
    if not facts.visible:
        return _result(facts, Verdict.NOT_A_PARTY, _not_a_party())
    mismatches = compare_fields(facts.query, held)
    if mismatches:
        return _result(
            facts,
            Verdict.FIELD_MISMATCH,
            Explanation(
                _("Invoice %(number)s is here, but %(problems)s."),
                {
                    "number": held.number,
                    "problems": _JoinedExplanations([text for _field, text in mismatches]),
                },
            ),
            invoice=held,
            mismatches=[name for name, _text in mismatches],
        )
    if held.status == "voided":
        return _result(
            facts,
            Verdict.VOIDED,
            Explanation(
                _("Invoice %(number)s was voided (作废) by its seller; it is no longer valid."),
                {"number": held.number},
            ),
            invoice=held,
        )
    if held.status in {"partially_red_flushed", "fully_red_flushed"}:
        return _result(
            facts,
            Verdict.RED_FLUSHED,
            Explanation(
                _(
                    "Invoice %(number)s has been reversed by a red-letter invoice (%(status)s); "
                    "see its red-letter confirmation for the amounts."
                ),
                {"number": held.number, "status": held.status_label or held.status},
            ),
            invoice=held,
        )
    return _result(
        facts,
        Verdict.FOUND,
        Explanation(
            _(
                "Invoice %(number)s is here: %(status)s, issued %(date)s by %(seller)s to "
                "%(buyer)s, total %(total)s."
            ),
            {
                "number": held.number,
                "status": held.status_label or held.status,
                "date": held.issue_date.isoformat() if held.issue_date else "?",
                "seller": held.seller_name,
                "buyer": held.buyer_name,
                "total": held.total_with_tax,
            },
        ),
        invoice=held,
    )


@dataclass(frozen=True)
class _JoinedExplanations:
    """Several explanations joined by "; " in the language being rendered."""

    parts: list[Explanation]

    def __str__(self) -> str:
        language = translation.get_language() or "en"
        return "; ".join(part.render(language) for part in self.parts)


def _answer_with_invoice(facts: TraceFacts) -> NodeAnswer | None:
    """The home node's answer if it has the invoice, else the hub's, else another's."""
    having = [a for a in facts.answers if a.reached and a.has_invoice]
    having.sort(key=lambda a: (a.role == "hub", a.node_id))
    return having[0] if having else None


def _quarantined(facts: TraceFacts, held: Held) -> TraceResult:
    return _result(
        facts,
        Verdict.QUARANTINED,
        Explanation(
            _(
                "Invoice %(number)s reached this node on %(at)s but was set aside (quarantined): "
                "%(reason)s (%(detail)s). The node's operator must fix the cause and release it; "
                "open a support ticket if this persists."
            ),
            {
                "number": facts.query.number,
                "at": _when(held.at),
                "reason": held.reason_label,
                "detail": held.detail,
            },
        ),
    )


def _parked(facts: TraceFacts, held: Held) -> TraceResult:
    return _result(
        facts,
        Verdict.PARKED,
        Explanation(
            _(
                "Invoice %(number)s reached this node on %(at)s and waits for an earlier event "
                "(%(reason)s); it is applied as soon as that event arrives."
            ),
            {"number": facts.query.number, "at": _when(held.at), "reason": held.reason_label},
        ),
    )


def _held_elsewhere(facts: TraceFacts, home: NodeAnswer) -> TraceResult:
    if _out_of_scope(facts, buyer_region=home.buyer_region):
        return _out_of_scope_result(facts)
    if home.is_pending:
        return _result(
            facts,
            Verdict.PENDING_AT_ISSUER,
            Explanation(
                _(
                    "Invoice %(number)s was issued at the node of %(region)s on %(committed)s but "
                    "has not been sent yet: that node's relay is %(state)s since %(since)s. It "
                    "will arrive once the relay publishes it."
                ),
                {
                    "number": facts.query.number,
                    "region": region_name(home.region),
                    "committed": _when(home.committed_at),
                    "state": facts.home_relay_state or "?",
                    "since": _when(facts.home_relay_since),
                },
            ),
        )
    expected = facts.lag.expected_seconds() if facts.lag else None
    arrival = facts.now + timedelta(seconds=expected) if expected is not None else None
    if arrival is None:
        text = Explanation(
            _(
                "Invoice %(number)s exists at %(node)s (published %(published)s) but has not "
                "been applied here yet, and this node's consumer is %(state)s: it arrives when "
                "the consumer runs again."
            ),
            {
                "number": facts.query.number,
                "node": home.node_id,
                "published": _when(home.published_at),
                "state": facts.lag.consumer_state if facts.lag else "?",
            },
        )
    else:
        text = Explanation(
            _(
                "Invoice %(number)s exists at %(node)s (published %(published)s) but has not "
                "been applied here yet: %(pending)s events are waiting, the last one took "
                "%(lag)s s. Expected here by %(arrival)s."
            ),
            {
                "number": facts.query.number,
                "node": home.node_id,
                "published": _when(home.published_at),
                "pending": facts.lag.pending if facts.lag and facts.lag.pending else 0,
                "lag": round(facts.lag.last_lag_seconds or 0, 1) if facts.lag else "?",
                "arrival": _when(arrival),
            },
        )
    return _result(facts, Verdict.NOT_YET_SYNCED, text, expected_arrival=arrival)


def _out_of_scope(facts: TraceFacts, buyer_region: str) -> bool:
    """This node never receives the invoice: a regional node of neither party's region."""
    if facts.is_hub:
        return False
    region = facts.query.region
    if region == facts.node_region:
        return False
    return buyer_region != facts.node_region


def _out_of_scope_result(facts: TraceFacts) -> TraceResult:
    return _result(
        facts,
        Verdict.OUT_OF_SCOPE,
        Explanation(
            _(
                "Invoice %(number)s was issued in %(region)s. This node serves %(node_region)s "
                "and receives other regions' invoices only when their buyer is registered here. "
                "Trace or verify it at the node of %(region)s, or at the national platform."
            ),
            {
                "number": facts.query.number,
                "region": region_name(facts.query.region),
                "node_region": region_name(facts.node_region),
            },
        ),
        region_to_ask=facts.query.region,
    )


def _not_found(facts: TraceFacts) -> TraceResult:
    unreached = [a.node_id for a in facts.answers if not a.reached]
    if unreached:
        text = Explanation(
            _(
                "No invoice %(number)s is known here, and %(nodes)s did not answer, so the "
                "search is incomplete. Try again later; if no node knows it, it was probably "
                "mistyped or is not genuine."
            ),
            {"number": facts.query.number, "nodes": ", ".join(unreached)},
        )
    else:
        text = Explanation(
            _(
                "No node knows invoice %(number)s (asked: %(nodes)s): it was probably mistyped "
                "or is not genuine. Check the number against the document and ask the seller."
            ),
            {
                "number": facts.query.number,
                "nodes": ", ".join([facts.node_id, *[a.node_id for a in facts.answers]]),
            },
        )
    return _result(facts, Verdict.NOT_FOUND_ANYWHERE, text)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
