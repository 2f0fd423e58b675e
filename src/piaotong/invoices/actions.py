"""Issuing actions (开具): drafting, dual review (双人复核), issuing one or many invoices.

Each action checks permission and input first, then writes in one transaction: the rows, the
ledger event of every exchanged fact, an audit entry and an outbox row. Drafting and review are
local workflow: they are audited but not ledger events, so an invoice's exchanged history starts
with InvoiceIssued at seq 1 on every node.

Lock order when issuing, everywhere: invoice row -> quota row -> number sequence -> audit head.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.documents.actions import schedule_rendering
from piaotong.exchange.actions import enqueue_events
from piaotong.exchange.recovery import require_issuing_allowed
from piaotong.fastsql import Rows, build, insert_many, pipeline, reserve_ids, select_models
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine, QuotaUsage
from piaotong.invoices.numbering import numbers_from, reserve_numbers
from piaotong.invoices.payload import invoice_payload
from piaotong.invoices.rules import CheckedInvoice, InvoiceDraft, check_draft
from piaotong.ledger.actions import (
    AUDIT_CHAIN,
    ReadyPayload,
    append_first_events,
    record_audit,
    record_audits,
    reserve_chain,
)
from piaotong.ledger.keys import signing_key
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.canonical import canonical_json, sha256_hex
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.money import CENT
from piaotong.lib.regions import region_for_uscc

ISSUED_EVENT = "InvoiceIssued"
PIPELINE_UP_TO = 10  # invoices per call


class BulkViolations(ValueError):
    """Per-item violations of a bulk request: {item index: violations}. Nothing was written."""

    def __init__(self, items: dict[int, list[RuleViolation]]) -> None:
        self.items = items
        super().__init__(f"{len(items)} of the invoices have errors")


def _require(actor: Actor, action: Action, organisation: Organisation) -> None:
    if not actor.can(action, organisation.pk):
        raise PermissionDenied(f"{actor.label} may not {action} for {organisation.name}")


def _require_home_node(seller: Organisation) -> None:
    """Only the seller's home node writes seller-side facts (ARCHITECTURE §5).

    The region in an invoice number names the node that owns the invoice; a node numbers only
    for its own region, so it may issue only for sellers registered there.
    """
    if seller.region != settings.PIAOTONG_REGION:
        raise RuleViolation(
            "seller",
            "seller_not_in_region",
            _(
                "%(name)s is registered in region %(seller_region)s; this node issues for region "
                "%(node_region)s only. Issue on the node of region %(seller_region)s."
            ),
            {
                "name": seller.name,
                "seller_region": seller.region,
                "node_region": settings.PIAOTONG_REGION,
            },
        )


def _require_approved(seller: Organisation) -> None:
    """Only an organisation whose registration the tax bureau approved drafts or issues."""
    if seller.is_pending:
        raise RuleViolation(
            "seller",
            "organisation_not_approved",
            _(
                "%(name)s cannot draft or issue invoices yet: its registration awaits the tax bureau's review."
            ),
            {"name": seller.name},
        )
    if not seller.is_approved:
        raise RuleViolation(
            "seller",
            "organisation_not_approved",
            _(
                "%(name)s cannot draft or issue invoices: the tax bureau rejected its registration (%(reason)s)."
            ),
            {"name": seller.name, "reason": seller.review_note},
        )


def _status_error(invoice: Invoice, wanted: str) -> RuleViolation:
    return RuleViolation(
        "status",
        "wrong_status",
        _("The invoice is %(status)s; this needs it to be %(wanted)s."),
        {"status": invoice.get_status_display(), "wanted": wanted},
    )


def _registered_buyers(checked: Sequence[CheckedInvoice]) -> dict[str, Organisation]:
    """Buyers that are organisations on this node, by tax id, in one query for a whole batch."""
    tax_ids = sorted({c.buyer_tax_id for c in checked if c.buyer_tax_id})
    if not tax_ids:
        return {}
    where = f"tax_id IN ({', '.join(['%s'] * len(tax_ids))})"
    return {org.tax_id: org for org in select_models(Organisation, where, tax_ids)}


def _build_invoice(
    actor: Actor, seller: Organisation, checked: CheckedInvoice, buyers: dict[str, Organisation]
) -> Invoice:
    draft = checked.draft
    return build(
        Invoice,
        {
            "kind": draft.kind,
            "seller_name": seller.name,
            "seller_tax_id": seller.tax_id,
            "seller_address": " ".join(filter(None, [seller.address, seller.phone])),
            "seller_bank": " ".join(filter(None, [seller.bank_name, seller.bank_account])),
            "buyer_kind": draft.buyer_kind,
            "buyer_name": draft.buyer_name.strip(),
            "buyer_tax_id": checked.buyer_tax_id,
            "buyer_address": draft.buyer_address.strip(),
            "buyer_bank": draft.buyer_bank.strip(),
            "buyer_email": draft.buyer_email.strip(),
            "buyer_phone": draft.buyer_phone.strip(),
            "total_amount": checked.totals.amount,
            "total_tax": checked.totals.tax,
            "total_with_tax": checked.totals.total,
            "remarks": draft.remarks.strip(),
            "created_by_label": actor.label,
        },
        {
            "seller": seller,
            "buyer": buyers.get(checked.buyer_tax_id),
            "created_by": actor.user,
            "created_by_key": actor.api_key,
        },
    )


def _build_lines(invoice: Invoice, checked: CheckedInvoice) -> list[InvoiceLine]:
    related = {"invoice": invoice}
    return [
        build(
            InvoiceLine,
            {
                "position": position,
                "kind": line.amounts.kind,
                "tax_code": line.draft.tax_code.strip(),
                "item_name": line.draft.item_name.strip(),
                "printed_name": line.printed_name,
                "spec": line.draft.spec.strip(),
                "unit": line.draft.unit.strip(),
                "quantity": line.amounts.quantity,
                "unit_price": line.amounts.unit_price,
                "amount": line.amounts.amount,
                "tax_rate": line.amounts.rate.key,
                "tax": line.amounts.tax,
            },
            related,
        )
        for position, line in enumerate(checked.lines, start=1)
    ]


def do_create_draft(
    actor: Actor, seller: Organisation, draft: InvoiceDraft, *, submit: bool = False
) -> Invoice:
    """Save a checked draft (草稿); it gets a number only when issued.

    With `submit`, the draft goes straight to the review queue in the same transaction.
    """
    _require(actor, Action.DRAFT_INVOICE, seller)
    _require_home_node(seller)
    _require_approved(seller)
    checked = check_draft(draft, seller.taxpayer_kind)
    with transaction.atomic():
        invoice = _build_invoice(actor, seller, checked, _registered_buyers([checked]))
        if submit:
            invoice.status = InvoiceStatus.PENDING_REVIEW
        invoice.save()
        InvoiceLine.objects.bulk_create(_build_lines(invoice, checked))
        details = {"total": invoice.total_with_tax}
        record_audits(
            actor,
            [("invoice.drafted", invoice.stream, seller.pk, details)]
            + ([("invoice.submitted", invoice.stream, seller.pk, {})] if submit else []),
        )
    return invoice


# The fields a draft update may change: everything the drafter typed, nothing about its history.
DRAFT_FIELDS = [
    "kind", "buyer", "buyer_kind", "buyer_name", "buyer_tax_id", "buyer_address", "buyer_bank",
    "buyer_email", "buyer_phone", "total_amount", "total_tax", "total_with_tax", "remarks",
]  # fmt: skip


def do_update_draft(
    actor: Actor, invoice: Invoice, draft: InvoiceDraft, *, submit: bool = False
) -> Invoice:
    """Replace a draft's content (a rejected draft is corrected this way); the seller stays."""
    _require(actor, Action.DRAFT_INVOICE, invoice.seller)
    _require_approved(invoice.seller)
    checked = check_draft(draft, invoice.seller.taxpayer_kind)
    with transaction.atomic():
        invoice = _locked(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            raise _status_error(invoice, str(InvoiceStatus.DRAFT.label))
        fresh = _build_invoice(actor, invoice.seller, checked, _registered_buyers([checked]))
        for name in DRAFT_FIELDS:
            setattr(invoice, name, getattr(fresh, name))
        invoice.status = InvoiceStatus.PENDING_REVIEW if submit else InvoiceStatus.DRAFT
        invoice.save(update_fields=[*DRAFT_FIELDS, "status", "updated_at"])
        invoice.lines.all().delete()
        InvoiceLine.objects.bulk_create(_build_lines(invoice, checked))
        stream, org = invoice.stream, invoice.seller_id
        record_audits(
            actor,
            [("invoice.draft_updated", stream, org, {"total": invoice.total_with_tax})]
            + ([("invoice.submitted", stream, org, {})] if submit else []),
        )
    return invoice


def _locked(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update().select_related("seller").get(pk=invoice.pk)


def do_submit_for_review(actor: Actor, invoice: Invoice) -> Invoice:
    """Send a draft to the review queue (待复核)."""
    _require(actor, Action.DRAFT_INVOICE, invoice.seller)
    with transaction.atomic():
        invoice = _locked(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            raise _status_error(invoice, str(InvoiceStatus.DRAFT.label))
        invoice.status = InvoiceStatus.PENDING_REVIEW
        invoice.save(update_fields=["status", "updated_at"])
        record_audit(actor, "invoice.submitted", invoice.stream, invoice.seller_id)
    return invoice


def _check_reviewer(actor: Actor, invoice: Invoice) -> None:
    _require(actor, Action.REVIEW_INVOICE, invoice.seller)
    if actor.user is None or actor.user.pk == invoice.created_by_id:
        raise RuleViolation(
            "reviewer",
            "self_review",
            _(
                "Nobody approves their own invoice: a second user with the reviewer role must approve it."
            ),
        )


def do_approve_invoice(actor: Actor, invoice: Invoice) -> Invoice:
    """Approve a draft under dual review, which issues it (复核通过即开具)."""
    _check_reviewer(actor, invoice)
    _require_approved(invoice.seller)
    with transaction.atomic():
        invoice = _locked(invoice)
        if invoice.status != InvoiceStatus.PENDING_REVIEW:
            raise _status_error(invoice, str(InvoiceStatus.PENDING_REVIEW.label))
        invoice.reviewed_by = actor.user
        invoice.reviewer_name = actor.label
        _issue_locked([invoice], actor, [list(invoice.lines.all())], created=False)
    return invoice


def do_reject_invoice(actor: Actor, invoice: Invoice, reason: str) -> Invoice:
    """Send a pending draft back to its author with a reason."""
    _check_reviewer(actor, invoice)
    if not reason.strip():
        raise RuleViolation(
            "reason", "required", _("Say why the draft is rejected, so its author can fix it.")
        )
    with transaction.atomic():
        invoice = _locked(invoice)
        if invoice.status != InvoiceStatus.PENDING_REVIEW:
            raise _status_error(invoice, str(InvoiceStatus.PENDING_REVIEW.label))
        invoice.status = InvoiceStatus.DRAFT
        invoice.review_note = reason.strip()[:500]
        invoice.save(update_fields=["status", "review_note", "updated_at"])
        record_audit(
            actor, "invoice.rejected", invoice.stream, invoice.seller_id, {"reason": reason}
        )
    return invoice


def _refuse_without_review(seller: Organisation) -> None:
    if seller.requires_dual_review:
        raise RuleViolation(
            "status",
            "review_required",
            _(
                "This organisation requires dual review: submit the draft for review instead of issuing it."
            ),
        )


def do_issue_invoice(actor: Actor, invoice: Invoice) -> Invoice:
    """Issue a saved draft (开具) when the organisation does not require dual review."""
    _require(actor, Action.ISSUE_INVOICE, invoice.seller)
    _require_approved(invoice.seller)
    _refuse_without_review(invoice.seller)
    with transaction.atomic():
        invoice = _locked(invoice)
        if invoice.status != InvoiceStatus.DRAFT:
            raise _status_error(invoice, str(InvoiceStatus.DRAFT.label))
        _issue_locked([invoice], actor, [list(invoice.lines.all())], created=False)
    return invoice


def do_issue_new_invoice(actor: Actor, seller: Organisation, draft: InvoiceDraft) -> Invoice:
    """Check and issue an invoice in one step (API, CLI, the issue form's 'issue now')."""
    return do_issue_invoices(actor, seller, [draft])[0]


def do_issue_invoices(
    actor: Actor, seller: Organisation, drafts: Sequence[InvoiceDraft]
) -> list[Invoice]:
    """Issue many invoices all-or-nothing (批量开具): every draft is checked before any is written."""
    _require(actor, Action.ISSUE_INVOICE, seller)
    require_issuing_allowed()  # a node restored from a backup first recovers its numbers
    _require_home_node(seller)
    _require_approved(seller)
    _refuse_without_review(seller)
    checked, errors = [], {}
    for index, draft in enumerate(drafts):
        try:
            checked.append(check_draft(draft, seller.taxpayer_kind))
        except RuleViolations as many:
            errors[index] = many.violations
    if errors:
        if len(drafts) == 1:
            raise RuleViolations(errors[0])
        raise BulkViolations(errors)
    amount = sum((c.totals.amount for c in checked), Decimal(0))
    # A few invoices: the locking statements go out together with the buyer query, the writes
    # as one statement after them (fastsql.pipeline); the invoices' and events' keys are
    # reserved for that. Many: few statements anyway, and the rows go by COPY, which
    # pipelines refuse.
    small = len(checked) <= PIPELINE_UP_TO
    with transaction.atomic(), pipeline() if small else _without_cycle_collection():
        reservation = _reserve(seller, len(checked), amount, with_ids=True)
        buyers = _registered_buyers(checked)
        invoices = [_build_invoice(actor, seller, c, buyers) for c in checked]
        lines = [_build_lines(invoice, c) for invoice, c in zip(invoices, checked, strict=True)]
        _issue(invoices, actor, lines, created=True, reservation=reservation)
    return invoices


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one bulk issue.

    The objects of a batch (invoices, lines, events, rows) all live until commit, so the
    collector's passes find nothing to free but keep traversing them: 20-120 µs per invoice
    measured (docs/benchmarks.md). Reference counting still frees everything else meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class _Issued:
    invoice: Invoice
    payload: dict[str, object]
    body: bytes  # the canonical JSON of `payload`: what is hashed and signed


_QUOTA_TABLE = QuotaUsage._meta.db_table
_CONSUME_QUOTA = (
    f"INSERT INTO {_QUOTA_TABLE} (organisation_id, period, used) VALUES (%s, %s, %s) "  # noqa: S608 - our table
    "ON CONFLICT (organisation_id, period) "
    f"DO UPDATE SET used = {_QUOTA_TABLE}.used + excluded.used RETURNING used"
)


@dataclass(frozen=True)
class _Reservation:
    """What an issue takes before it writes, in lock order: the month's quota row, the number
    sequence, the audit chain's head; on PostgreSQL also the keys of the invoices and their
    ledger events. Under `fastsql.pipeline()` the answers are read when needed."""

    today: date
    now: datetime
    amount: Decimal
    quota: Rows
    numbers: Rows
    audit: Rows
    ids: Rows | None


def _reserve(seller: Organisation, count: int, amount: Decimal, *, with_ids: bool) -> _Reservation:
    today, now = timezone.localdate(), timezone.now()
    return _Reservation(
        today=today,
        now=now,
        amount=amount,
        quota=_take_quota(seller, today.strftime("%Y%m"), amount),
        numbers=reserve_numbers(today.year, count),
        audit=reserve_chain(AUDIT_CHAIN, count),
        ids=reserve_ids([Invoice, LedgerEvent], count) if with_ids else None,
    )


def _take_quota(seller: Organisation, period: str, amount: Decimal) -> Rows:
    """Add `amount` to the month's usage, creating the row on the month's first issue; the row
    stays locked until commit. `_check_quota` then refuses what went over the quota."""
    return Rows(_CONSUME_QUOTA, [seller.pk, period, amount])


def _check_quota(seller: Organisation, taken: Rows, amount: Decimal) -> None:
    row = taken.first()
    assert row is not None
    used = row[0] if isinstance(row[0], Decimal) else Decimal(str(row[0])).quantize(CENT)
    if used > seller.issuing_quota:
        raise RuleViolation(
            "total_amount",
            "quota_exceeded",
            _(
                "This exceeds the monthly issuing quota (授信额度): %(remaining)s of %(quota)s remains "
                "this month. Ask the tax bureau to raise the quota or issue less."
            ),
            {"remaining": seller.issuing_quota - (used - amount), "quota": seller.issuing_quota},
        )


ISSUE_FIELDS = [
    "number",
    "status",
    "issue_date",
    "issued_at",
    "issuer_name",
    "signing_key_id",
    "signature",
    "payload_hash",
    "reviewed_by",
    "reviewer_name",
    "updated_at",
]


def _issue_locked(
    invoices: list[Invoice], actor: Actor, lines: list[list[InvoiceLine]], *, created: bool
) -> None:
    """Number, sign and record invoices of one seller; the caller holds the transaction.

    `created` says whether the invoices are new objects (bulk-inserted here) or locked drafts.
    """
    require_issuing_allowed()  # a node restored from a backup first recovers its numbers
    amount = sum((i.total_amount for i in invoices), Decimal(0))
    reservation = _reserve(invoices[0].seller, len(invoices), amount, with_ids=False)
    _issue(invoices, actor, lines, created=created, reservation=reservation)


def _issue(
    invoices: list[Invoice],
    actor: Actor,
    lines: list[list[InvoiceLine]],
    *,
    created: bool,
    reservation: _Reservation,
) -> None:
    seller = invoices[0].seller
    _check_quota(seller, reservation.quota, reservation.amount)
    numbers = numbers_from(reservation.numbers, reservation.today.year, len(invoices))
    ids = reservation.ids.all() if reservation.ids is not None else None
    key = signing_key()
    issued = []
    today, now = reservation.today, reservation.now
    for invoice, invoice_lines, number in zip(invoices, lines, numbers, strict=True):
        invoice.number, invoice.status = number, InvoiceStatus.ISSUED
        invoice.issue_date, invoice.issued_at = today, now
        invoice.issuer_name = invoice.created_by_label
        invoice.signing_key_id = key.key_id
        payload = invoice_payload(invoice, invoice_lines)
        body = canonical_json(payload)
        invoice.payload_hash, invoice.signature = sha256_hex(body), key.sign(body)
        issued.append(_Issued(invoice, payload, body))
    if created:
        if ids is not None:
            for invoice, (invoice_id, _event_id) in zip(invoices, ids, strict=True):
                invoice.pk = invoice_id
        insert_many(invoices)
        for invoice, invoice_lines in zip(invoices, lines, strict=True):
            for line in invoice_lines:
                line.invoice = invoice
        insert_many([line for group in lines for line in group])
        # Inserted rows send no post_save, which renders the documents of saved drafts.
        schedule_rendering(invoices)
    else:
        for invoice in invoices:
            invoice.save(update_fields=ISSUE_FIELDS)
    _record_issued(
        actor,
        issued,
        event_ids=None if ids is None else [event_id for _invoice_id, event_id in ids],
        audit=reservation.audit,
    )


def _record_issued(
    actor: Actor,
    issued: list[_Issued],
    *,
    event_ids: list[int] | None = None,
    audit: Rows | None = None,
) -> None:
    events = append_first_events(
        [(item.invoice.stream, ISSUED_EVENT, _issued_payload(item)) for item in issued],
        ids=event_ids,
    )
    record_audits(
        actor,
        [
            (
                "invoice.issued",
                item.invoice.stream,
                item.invoice.seller_id,
                {"number": item.invoice.number, "total": item.invoice.total_with_tax},
            )
            for item in issued
        ],
        reserved=audit,
    )
    enqueue_events(
        [
            (event, item.invoice.seller.region, _buyer_region(item.invoice))
            for item, event in zip(issued, events, strict=True)
        ]
    )


def _issued_payload(item: _Issued) -> ReadyPayload:
    """The InvoiceIssued payload, built from the signed bytes instead of serialising the
    invoice again: loading canonical JSON gives what `json_ready` would (keys in sorted order)."""
    invoice = item.invoice
    rest = {
        "key_id": invoice.signing_key_id,
        "payload_hash": invoice.payload_hash,
        "signature": invoice.signature,
    }
    return ReadyPayload(
        stored={"invoice": orjson.loads(item.body), **rest},
        hashed={"invoice": orjson.Fragment(item.body), **rest},
    )


def _buyer_region(invoice: Invoice) -> str:
    if invoice.buyer is not None:
        return invoice.buyer.region
    region = region_for_uscc(invoice.buyer_tax_id) if len(invoice.buyer_tax_id) == 18 else None
    return region.code if region else ""


def do_record_invoice_export(
    actor: Actor, organisation_ids: Sequence[int | None], filters: dict[str, str], rows: int
) -> None:
    """An export of invoices is audited once per organisation whose invoices it may contain,
    or once node-wide (no organisation) for a tax officer's or the operator's export."""
    details = {"filters": filters, "rows": rows}
    with transaction.atomic():
        record_audits(
            actor,
            [
                ("invoice.exported", "invoices", org, details)
                for org in (organisation_ids or [None])
            ],
        )
