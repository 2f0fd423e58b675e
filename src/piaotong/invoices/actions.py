"""Issuing actions (开具): drafting, dual review (双人复核), issuing one or many invoices.

Each action checks permission and input first, then writes in one transaction: the rows, the
ledger event of every exchanged fact, an audit entry and an outbox row. Drafting and review are
local workflow: they are audited but not ledger events, so an invoice's exchanged history starts
with InvoiceIssued at seq 1 on every node.

Lock order when issuing, everywhere: invoice row -> quota row -> number sequence -> audit head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.exchange.actions import enqueue_events
from piaotong.fastsql import execute_returning, insert_many
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine, QuotaUsage
from piaotong.invoices.numbering import allocate_numbers
from piaotong.invoices.payload import invoice_payload
from piaotong.invoices.rules import CheckedInvoice, InvoiceDraft, check_draft
from piaotong.ledger.actions import append_first_events, record_audit, record_audits
from piaotong.ledger.keys import signing_key
from piaotong.lib.canonical import canonical_json, sha256_hex
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.regions import region_for_uscc

ISSUED_EVENT = "InvoiceIssued"


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
    tax_ids = {c.buyer_tax_id for c in checked if c.buyer_tax_id}
    return (
        {org.tax_id: org for org in Organisation.objects.filter(tax_id__in=tax_ids)}
        if tax_ids
        else {}
    )


def _build_invoice(
    actor: Actor, seller: Organisation, checked: CheckedInvoice, buyers: dict[str, Organisation]
) -> Invoice:
    draft = checked.draft
    buyer = buyers.get(checked.buyer_tax_id)
    return Invoice(
        kind=draft.kind,
        seller=seller,
        seller_name=seller.name,
        seller_tax_id=seller.tax_id,
        seller_address=" ".join(filter(None, [seller.address, seller.phone])),
        seller_bank=" ".join(filter(None, [seller.bank_name, seller.bank_account])),
        buyer=buyer,
        buyer_kind=draft.buyer_kind,
        buyer_name=draft.buyer_name.strip(),
        buyer_tax_id=checked.buyer_tax_id,
        buyer_address=draft.buyer_address.strip(),
        buyer_bank=draft.buyer_bank.strip(),
        buyer_email=draft.buyer_email.strip(),
        buyer_phone=draft.buyer_phone.strip(),
        total_amount=checked.totals.amount,
        total_tax=checked.totals.tax,
        total_with_tax=checked.totals.total,
        remarks=draft.remarks.strip(),
        created_by=actor.user,
        created_by_key=actor.api_key,
        created_by_label=actor.label,
    )


def _build_lines(invoice: Invoice, checked: CheckedInvoice) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            invoice=invoice,
            position=position,
            kind=line.amounts.kind,
            tax_code=line.draft.tax_code.strip(),
            item_name=line.draft.item_name.strip(),
            printed_name=line.printed_name,
            spec=line.draft.spec.strip(),
            unit=line.draft.unit.strip(),
            quantity=line.amounts.quantity,
            unit_price=line.amounts.unit_price,
            amount=line.amounts.amount,
            tax_rate=line.amounts.rate.key,
            tax=line.amounts.tax,
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
    with transaction.atomic():
        buyers = _registered_buyers(checked)
        invoices = [_build_invoice(actor, seller, c, buyers) for c in checked]
        lines = [_build_lines(invoice, c) for invoice, c in zip(invoices, checked, strict=True)]
        _issue_locked(invoices, actor, lines, created=True)
    return invoices


@dataclass(frozen=True)
class _Issued:
    invoice: Invoice
    payload: dict[str, object]


_CONSUME_QUOTA = (
    f"UPDATE {QuotaUsage._meta.db_table} SET used = used + %s "  # noqa: S608 - our table
    "WHERE organisation_id = %s AND period = %s AND used <= %s RETURNING used"
)


def _consume_quota(seller: Organisation, period: str, amount: Decimal) -> None:
    """Add `amount` to the month's usage if it fits the quota.

    The conditional UPDATE checks and consumes in one statement and keeps the row locked until
    commit; only when it matches nothing (no row yet, or over quota) do we look closer.
    """
    if execute_returning(
        _CONSUME_QUOTA, [amount, seller.pk, period, seller.issuing_quota - amount]
    ):
        return
    usage_row = QuotaUsage.objects.filter(organisation=seller, period=period)
    QuotaUsage.objects.bulk_create(
        [QuotaUsage(organisation=seller, period=period)], ignore_conflicts=True
    )
    usage = usage_row.select_for_update().get()
    if usage.used + amount > seller.issuing_quota:
        raise RuleViolation(
            "total_amount",
            "quota_exceeded",
            _(
                "This exceeds the monthly issuing quota (授信额度): %(remaining)s of %(quota)s remains "
                "this month. Ask the tax bureau to raise the quota or issue less."
            ),
            {"remaining": seller.issuing_quota - usage.used, "quota": seller.issuing_quota},
        )
    usage.used += amount
    usage.save(update_fields=["used"])


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
    seller = invoices[0].seller
    today, now = timezone.localdate(), timezone.now()
    _consume_quota(
        seller, today.strftime("%Y%m"), sum((i.total_amount for i in invoices), Decimal(0))
    )
    numbers = allocate_numbers(today.year, len(invoices))
    key = signing_key()
    issued = []
    for invoice, invoice_lines, number in zip(invoices, lines, numbers, strict=True):
        invoice.number, invoice.status = number, InvoiceStatus.ISSUED
        invoice.issue_date, invoice.issued_at = today, now
        invoice.issuer_name = invoice.created_by_label
        invoice.signing_key_id = key.key_id
        payload = invoice_payload(invoice, invoice_lines)
        body = canonical_json(payload)
        invoice.payload_hash, invoice.signature = sha256_hex(body), key.sign(body)
        issued.append(_Issued(invoice, payload))
    if created:
        insert_many(invoices)
        for invoice, invoice_lines in zip(invoices, lines, strict=True):
            for line in invoice_lines:
                line.invoice = invoice
        insert_many([line for group in lines for line in group])
    else:
        for invoice in invoices:
            invoice.save(update_fields=ISSUE_FIELDS)
    _record_issued(actor, issued)


def _record_issued(actor: Actor, issued: list[_Issued]) -> None:
    events = append_first_events(
        [
            (
                item.invoice.stream,
                ISSUED_EVENT,
                {
                    "invoice": item.payload,
                    "payload_hash": item.invoice.payload_hash,
                    "signature": item.invoice.signature,
                    "key_id": item.invoice.signing_key_id,
                },
            )
            for item in issued
        ]
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
    )
    enqueue_events(
        [
            (event, item.invoice.seller.region, _buyer_region(item.invoice))
            for item, event in zip(issued, events, strict=True)
        ]
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
