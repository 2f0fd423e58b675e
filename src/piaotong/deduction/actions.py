"""Buyer-side actions on received invoices (进项): booking (入账确认), selection (勾选),
revocation (撤销勾选), statistics (申请统计 / 撤销统计) and confirmation (确认签名).

Each action checks permission and input first, then writes in one transaction: rows, one ledger
event per fact about an invoice (on the invoice's stream, under a row lock on the invoice), an
audit entry and an outbox row, so the seller's node learns of the use (it changes who must
agree to a red-letter reversal, china-einvoice.md §6). Only the buyer's node writes these facts
(ARCHITECTURE §5): actions refuse buyers registered in another region.

An event carries every value its action wrote (times, who, the period's uid, face values), so
that the buyer's node, restored from an old backup, rebuilds the same rows from its own events
taken back from the hub (`deduction.replay`).

Lock order, everywhere: deduction period row -> invoice rows (by id) -> audit chain head. The
invoices app locks invoice -> quota -> sequence -> audit head, which is compatible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.deduction import rules
from piaotong.deduction.choices import PeriodStatus, Purpose
from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import check_not_future, parse_period, period_of
from piaotong.exchange.actions import enqueue_events
from piaotong.invoices.actions import BulkViolations
from piaotong.invoices.choices import AuthorityFlag, InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine
from piaotong.ledger.actions import append_event, record_audit, record_audits
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.errors import RuleViolation

BOOKED_EVENT = "InvoiceBooked"
SELECTED_EVENT = "DeductionSelected"
REVOKED_EVENT = "DeductionSelectionRevoked"
CONFIRMED_EVENT = "DeductionConfirmed"
STATISTICS_APPLIED_EVENT = "DeductionStatisticsApplied"
STATISTICS_REVOKED_EVENT = "DeductionStatisticsRevoked"
PERIOD_CONFIRMED_EVENT = "DeductionPeriodConfirmed"
MAX_ITEMS = 5000


@dataclass(frozen=True)
class SelectionItem:
    """One invoice to select: deduct it (all of its face tax unless `effective_tax` says less),
    or not (`deduct=False`, with `reason` one of the 不抵扣 reason codes "1" to "5")."""

    invoice: Invoice
    deduct: bool = True
    effective_tax: Decimal | None = None
    reason: str = ""


class SelectionErrors(BulkViolations):
    """Per-item violations of a selection request, by item index; nothing was selected."""

    def __init__(self, items: dict[int, list[RuleViolation]]) -> None:
        super().__init__(items)
        self.args = (f"{len(items)} of the invoices cannot be selected; nothing was selected",)


# --- Guards ----------------------------------------------------------------------------------


def _require(actor: Actor, action: Action, organisation_id: int | None) -> None:
    if organisation_id is None or not actor.can(action, organisation_id):
        raise PermissionDenied(f"{actor.label} may not {action} for organisation {organisation_id}")


def _buyer_of(actor: Actor, action: Action, invoice: Invoice) -> Organisation:
    if invoice.buyer_id is None:
        raise PermissionDenied("The invoice has no registered buyer on this node")
    _require(actor, action, invoice.buyer_id)
    return Organisation.objects.get(pk=invoice.buyer_id)


def require_buyer_node(buyer: Organisation) -> None:
    """Only the buyer's node writes buyer-side facts (ARCHITECTURE §5)."""
    if buyer.region != settings.PIAOTONG_REGION:
        raise RuleViolation(
            "buyer",
            "buyer_not_in_region",
            _(
                "%(name)s is registered in region %(buyer_region)s; this node records buyer-side "
                "facts for region %(node_region)s only. Book and select on the node of region "
                "%(buyer_region)s."
            ),
            {
                "name": buyer.name,
                "buyer_region": buyer.region,
                "node_region": settings.PIAOTONG_REGION,
            },
        )


def _require_general_taxpayer(buyer: Organisation) -> None:
    if buyer.is_small_scale:
        raise RuleViolation(
            "buyer",
            "small_scale_no_deduction",
            _(
                "%(name)s is a small-scale taxpayer (小规模纳税人): the simplified method deducts "
                "no input tax, so there is nothing to select."
            ),
            {"name": buyer.name},
        )


def _buyer_region_pair(invoice: Invoice, buyer: Organisation) -> tuple[str, str]:
    """(seller region, buyer region) of the outbox subject; the seller's region is digits 3-4
    of the invoice number, the node that owns the invoice."""
    return (invoice.number or "")[2:4], buyer.region


def _locked_invoices(ids: Iterable[int]) -> dict[int, Invoice]:
    # of=("self",) keeps organisation rows out of the lock; ordered by id against deadlocks.
    rows = Invoice.objects.select_for_update(of=("self",)).filter(pk__in=list(ids)).order_by("pk")
    return {invoice.pk: invoice for invoice in rows}


def _record(
    actor: Actor,
    buyer: Organisation,
    facts: Sequence[tuple[Invoice, str, dict[str, Any]]],
    audit_action: str,
) -> list[LedgerEvent]:
    """One ledger event per invoice, one audit entry each, one outbox row each."""
    if not facts:  # a period confirmed without selections: its own event says it
        return []
    events = [append_event(invoice.stream, kind, payload) for invoice, kind, payload in facts]
    record_audits(
        actor,
        [
            (audit_action, invoice.stream, buyer.pk, {"number": invoice.number} | payload)
            for invoice, _kind, payload in facts
        ],
    )
    enqueue_events(
        [
            (event, *_buyer_region_pair(invoice, buyer))
            for event, (invoice, _kind, _payload) in zip(events, facts, strict=True)
        ]
    )
    return events


# --- Booking (入账确认) ------------------------------------------------------------------------


def do_book_invoice(actor: Actor, invoice: Invoice) -> Booking:
    """Record that the buyer booked a received invoice (入账确认)."""
    buyer = _buyer_of(actor, Action.BOOK_INVOICE, invoice)
    require_buyer_node(buyer)
    with transaction.atomic():
        invoice = _locked_invoices([invoice.pk])[invoice.pk]
        _check_bookable(invoice)
        now = timezone.now()
        booking = Booking.objects.create(
            invoice=invoice, buyer=buyer, booked_at=now, booked_by_label=actor.label
        )
        payload = {
            "buyer_tax_id": buyer.tax_id,
            "booked_at": now.isoformat(),
            "booked_by": actor.label,
        }
        _record(actor, buyer, [(invoice, BOOKED_EVENT, payload)], "purchase.booked")
    return booking


def _check_bookable(invoice: Invoice) -> None:
    params = {"number": invoice.number}
    if Booking.objects.filter(invoice=invoice).exists():
        raise RuleViolation("invoice", "already_booked", _("%(number)s is already booked."), params)
    if invoice.authority_flag:
        raise RuleViolation(
            "invoice",
            "flagged",
            _(
                "%(number)s is flagged %(mark)s by the tax authority; it cannot be booked until "
                "the flag is lifted."
            ),
            params | {"mark": invoice.status_mark[0]},
        )
    if invoice.status in {InvoiceStatus.VOIDED, InvoiceStatus.FULLY_RED_FLUSHED}:
        raise RuleViolation(
            "invoice",
            "status",
            _("%(number)s is %(status)s; there is nothing to book."),
            params | {"status": invoice.get_status_display()},
        )
    if invoice.is_draft:
        raise RuleViolation("invoice", "status", _("Drafts cannot be booked."))


# --- Periods -----------------------------------------------------------------------------------


def _locked_period(buyer: Organisation, period: str) -> DeductionPeriod:
    """The period row, created on first use, locked until commit."""
    DeductionPeriod.objects.bulk_create(
        [DeductionPeriod(buyer=buyer, period=period)], ignore_conflicts=True
    )
    return DeductionPeriod.objects.select_for_update().get(buyer=buyer, period=period)


def _status_violation(period: DeductionPeriod, wanted: PeriodStatus) -> RuleViolation:
    hints = {
        PeriodStatus.OPEN: _(
            "Selections change only while the period is open: revoke the statistics first."
        ),
        PeriodStatus.COUNTED: _("Apply statistics (申请统计) first, then confirm."),
        PeriodStatus.CONFIRMED: _("The period is confirmed (确认签名) and can no longer change."),
    }
    current = PeriodStatus(period.status)
    hint = hints[PeriodStatus.CONFIRMED] if current == PeriodStatus.CONFIRMED else hints[wanted]
    return RuleViolation(
        "period",
        "period_status",
        _("Period %(period)s is %(status)s. %(hint)s"),
        {"period": period.period, "status": current.label, "hint": hint},
    )


def _check_period(period: str) -> str:
    period = parse_period(period)
    check_not_future(period, timezone.localdate())
    return period


# --- Selection (勾选) -------------------------------------------------------------------------


def do_select_for_deduction(
    actor: Actor, buyer: Organisation, period: str, items: list[SelectionItem]
) -> list[DeductionSelection]:
    """Select received invoices in `period`, all or nothing (批量勾选).

    Raises RuleViolation for the request as a whole (period, buyer) and `SelectionErrors`
    ({item index: violations}) when any item cannot be selected; then nothing is written.
    """
    _require(actor, Action.SELECT_DEDUCTION, buyer.pk)
    require_buyer_node(buyer)
    _require_general_taxpayer(buyer)
    period = _check_period(period)
    _check_item_count(items)
    with transaction.atomic():
        period_row = _locked_period(buyer, period)
        if not period_row.is_open:
            raise _status_violation(period_row, PeriodStatus.OPEN)
        invoices = _locked_invoices(item.invoice.pk for item in items)
        decisions = _decide_all(buyer, period, items, invoices)
        now = timezone.now()
        selections = [
            DeductionSelection(
                invoice=invoices[item.invoice.pk],
                deduction_period=period_row,
                purpose=decision.purpose,
                reason=decision.reason,
                face_amount=decision.face_amount,
                face_tax=decision.face_tax,
                effective_tax=decision.effective_tax,
                selected_at=now,
                selected_by_label=actor.label,
            )
            for item, decision in zip(items, decisions, strict=True)
        ]
        DeductionSelection.objects.bulk_create(selections)
        made = {"selected_at": now.isoformat(), "selected_by": actor.label}
        _record(
            actor,
            buyer,
            [(s.invoice, SELECTED_EVENT, _selection_payload(s, buyer) | made) for s in selections],
            "deduction.selected",
        )
    return selections


def _check_item_count(items: Sequence[SelectionItem]) -> None:
    if not items or len(items) > MAX_ITEMS:
        raise RuleViolation(
            "items",
            "item_count",
            _("Select between 1 and %(max)s invoices at a time."),
            {"max": MAX_ITEMS},
        )


def _selection_payload(selection: DeductionSelection, buyer: Organisation) -> dict[str, Any]:
    return {
        "buyer_tax_id": buyer.tax_id,
        "period": selection.deduction_period.period,
        "period_uid": str(selection.deduction_period.uid),
        "purpose": selection.purpose,
        "reason": selection.reason,
        "face_amount": selection.face_amount,
        "face_tax": selection.face_tax,
        "effective_tax": selection.effective_tax,
    }


def _decide_all(
    buyer: Organisation, period: str, items: Sequence[SelectionItem], invoices: dict[int, Invoice]
) -> list[rules.Decision]:
    candidates = _candidates(invoices.values())
    errors: dict[int, list[RuleViolation]] = {}
    decisions: list[rules.Decision] = []
    seen: set[int] = set()
    for index, item in enumerate(items):
        invoice = invoices.get(item.invoice.pk)
        problems = _item_problems(buyer, invoice, seen)
        if invoice is not None and not problems:
            problems = rules.check_selectable(candidates[invoice.pk], period)
        if not problems:
            try:
                decisions.append(rules.decide(candidates[item.invoice.pk], _choice(item)))
            except RuleViolation as violation:
                problems = [violation]
        if problems:
            errors[index] = problems
        seen.add(item.invoice.pk)
    if errors:
        raise SelectionErrors(errors)
    return decisions


def _choice(item: SelectionItem) -> rules.Choice:
    return rules.Choice(item.deduct, item.effective_tax, item.reason)


def _item_problems(
    buyer: Organisation, invoice: Invoice | None, seen: set[int]
) -> list[RuleViolation]:
    if invoice is None or invoice.buyer_id != buyer.pk or invoice.number is None:
        return [
            RuleViolation(
                "invoice",
                "not_received",
                _("This invoice was not issued to %(name)s."),
                {"name": buyer.name},
            )
        ]
    if invoice.pk in seen:
        return [
            RuleViolation(
                "invoice",
                "duplicate",
                _("%(number)s appears twice in this request; list each invoice once."),
                {"number": invoice.number},
            )
        ]
    return []


def _candidates(invoices: Iterable[Invoice]) -> dict[int, rules.Candidate]:
    """What the rules need, for many invoices in three queries (invoices, reds, selections)."""
    invoices = list(invoices)
    ids = [invoice.pk for invoice in invoices]
    reversed_by = {
        row["red_of_id"]: row
        for row in Invoice.objects.filter(red_of_id__in=ids)
        .exclude(status=InvoiceStatus.VOIDED)
        .values("red_of_id")
        .annotate(amount=Sum("total_amount"), tax=Sum("total_tax"))
        .order_by()
    }
    selected_in = dict(
        DeductionSelection.objects.filter(invoice_id__in=ids, revoked_at=None).values_list(
            "invoice_id", "deduction_period__period"
        )
    )
    zero = {"amount": Decimal(0), "tax": Decimal(0)}
    return {
        invoice.pk: rules.Candidate(
            number=invoice.number or "",
            kind=invoice.kind,
            status=invoice.status,
            authority_flag=invoice.authority_flag,
            is_red=invoice.is_red,
            face_amount=invoice.total_amount + reversed_by.get(invoice.pk, zero)["amount"],
            face_tax=invoice.total_tax + reversed_by.get(invoice.pk, zero)["tax"],
            issue_period=period_of(invoice.issue_date) if invoice.issue_date else "",
            selected_in=selected_in.get(invoice.pk, ""),
        )
        for invoice in invoices
    }


def do_revoke_selection(actor: Actor, invoice: Invoice) -> DeductionSelection:
    """Revoke the active selection of an invoice (撤销勾选) while its period is open."""
    buyer = _buyer_of(actor, Action.SELECT_DEDUCTION, invoice)
    require_buyer_node(buyer)
    active = DeductionSelection.objects.filter(invoice=invoice, revoked_at=None)
    found = active.select_related("deduction_period").first()
    if found is None:
        raise RuleViolation(
            "invoice",
            "not_selected",
            _("%(number)s is not selected in any period."),
            {"number": invoice.number},
        )
    with transaction.atomic():
        period_row = _locked_period(buyer, found.deduction_period.period)
        if not period_row.is_open:
            raise _status_violation(period_row, PeriodStatus.OPEN)
        invoice = _locked_invoices([invoice.pk])[invoice.pk]
        selection = active.get()
        selection.revoked_at, selection.revoked_by_label = timezone.now(), actor.label
        selection.save(update_fields=["revoked_at", "revoked_by_label"])
        payload = {
            "buyer_tax_id": buyer.tax_id,
            "period": period_row.period,
            "period_uid": str(period_row.uid),
            "revoked_at": selection.revoked_at.isoformat(),
            "revoked_by": actor.label,
        }
        _record(actor, buyer, [(invoice, REVOKED_EVENT, payload)], "deduction.revoked")
    return selection


# --- Statistics (申请统计) and confirmation (确认签名) ----------------------------------------


def _active_selections(period_row: DeductionPeriod) -> Any:
    return period_row.selections.filter(revoked_at=None)


def current_statistics(period_row: DeductionPeriod) -> dict[str, object]:
    """The statistics of the period's active selections as they stand now (two queries)."""
    active = _active_selections(period_row)
    rows = [
        rules.SelectedRow(kind, purpose, amount, face_tax, effective)
        for kind, purpose, amount, face_tax, effective in active.values_list(
            "invoice__kind", "purpose", "face_amount", "face_tax", "effective_tax"
        )
    ]
    # Lines of the selected invoices and of their red-letter reversals: the rate totals are the
    # remaining face values, like the selections' face amounts.
    selected = active.values("invoice_id")
    purpose_of = {
        invoice_id: purpose for invoice_id, purpose in active.values_list("invoice_id", "purpose")
    }
    sums: dict[tuple[str, str], list[Decimal]] = {}
    lines = InvoiceLine.objects.filter(
        Q(invoice_id__in=selected) | Q(invoice__red_of_id__in=selected)
    ).exclude(invoice__status=InvoiceStatus.VOIDED)
    for invoice_id, red_of_id, rate, amount, tax in (
        lines.values("invoice_id", "invoice__red_of_id", "tax_rate")
        .annotate(amount=Sum("amount"), tax=Sum("tax"))
        .values_list("invoice_id", "invoice__red_of_id", "tax_rate", "amount", "tax")
        .order_by()
    ):
        key = (purpose_of[red_of_id or invoice_id], rate)
        total = sums.setdefault(key, [Decimal(0), Decimal(0)])
        total[0] += amount
        total[1] += tax
    rates = [rules.RateRow(p, r, a, t) for (p, r), (a, t) in sums.items()]
    return rules.statistics(rows, rates)


def _record_period_event(
    actor: Actor, buyer: Organisation, period_row: DeductionPeriod, kind: str, action: str
) -> None:
    extra: dict[str, Any] = {}
    if kind == STATISTICS_APPLIED_EVENT:
        extra = {"statistics": period_row.statistics, "counted_at": period_row.counted_at}
    _publish_period_event(buyer, period_row, kind, extra)
    record_audit(actor, action, period_row.stream, buyer.pk, {"period": period_row.period})


def _publish_period_event(
    buyer: Organisation, period_row: DeductionPeriod, kind: str, extra: dict[str, Any]
) -> None:
    # The period row is locked by the caller: it is the subject of this stream.
    payload = {"buyer_tax_id": buyer.tax_id, "period": period_row.period} | extra
    event = append_event(period_row.stream, kind, payload)
    # Period facts concern no seller: they go to the hub (the authority) under the buyer region.
    enqueue_events([(event, buyer.region, buyer.region)])


def _publish_period_confirmed(buyer: Organisation, period_row: DeductionPeriod) -> None:
    """The period's confirmation as one fact of its own (also when it has no selection, and
    when a VAT return closed it): what the period row says once confirmed."""
    extra = {
        "statistics": period_row.statistics,
        "confirmed_at": period_row.confirmed_at,
        "confirmed_by": period_row.confirmed_by_label,
        "closed_by_return": period_row.closed_by_return,
    }
    _publish_period_event(buyer, period_row, PERIOD_CONFIRMED_EVENT, extra)


def do_apply_statistics(actor: Actor, buyer: Organisation, period: str) -> DeductionPeriod:
    """申请统计: freeze the period's totals by purpose, kind and rate; revocable."""
    _require(actor, Action.SELECT_DEDUCTION, buyer.pk)
    require_buyer_node(buyer)
    period = _check_period(period)
    with transaction.atomic():
        period_row = _locked_period(buyer, period)
        if not period_row.is_open:
            raise _status_violation(period_row, PeriodStatus.OPEN)
        period_row.statistics = current_statistics(period_row)
        period_row.status, period_row.counted_at = PeriodStatus.COUNTED, timezone.now()
        period_row.save(update_fields=["statistics", "status", "counted_at"])
        _record_period_event(
            actor, buyer, period_row, STATISTICS_APPLIED_EVENT, "deduction.statistics_applied"
        )
    return period_row


def do_revoke_statistics(actor: Actor, buyer: Organisation, period: str) -> DeductionPeriod:
    """撤销统计: reopen the period for selection."""
    _require(actor, Action.SELECT_DEDUCTION, buyer.pk)
    require_buyer_node(buyer)
    period = parse_period(period)
    with transaction.atomic():
        period_row = _locked_period(buyer, period)
        if period_row.status != PeriodStatus.COUNTED:
            raise _status_violation(period_row, PeriodStatus.COUNTED)
        period_row.status, period_row.counted_at = PeriodStatus.OPEN, None
        period_row.save(update_fields=["status", "counted_at"])
        _record_period_event(
            actor, buyer, period_row, STATISTICS_REVOKED_EVENT, "deduction.statistics_revoked"
        )
    return period_row


def do_confirm_deduction(actor: Actor, buyer: Organisation, period: str) -> DeductionPeriod:
    """确认签名: confirm the counted period; its selections become the confirmed use of each
    invoice, which the seller's node learns (one event per invoice)."""
    _require(actor, Action.CONFIRM_DEDUCTION, buyer.pk)
    require_buyer_node(buyer)
    period = parse_period(period)
    with transaction.atomic():
        period_row = _locked_period(buyer, period)
        if period_row.status != PeriodStatus.COUNTED:
            raise _status_violation(period_row, PeriodStatus.COUNTED)
        selections = list(_active_selections(period_row).order_by("invoice_id"))
        invoices = _locked_invoices(s.invoice_id for s in selections)
        _recheck(selections, invoices)
        now = timezone.now()
        period_row.status, period_row.confirmed_at = PeriodStatus.CONFIRMED, now
        period_row.confirmed_by_label = actor.label
        period_row.save(update_fields=["status", "confirmed_at", "confirmed_by_label"])
        facts = []
        for selection in selections:
            selection.deduction_period = period_row
            payload = _selection_payload(selection, buyer) | {
                "confirmed_at": now.isoformat(),
                "confirmed_by": actor.label,
            }
            facts.append((invoices[selection.invoice_id], CONFIRMED_EVENT, payload))
        _record(actor, buyer, facts, "deduction.invoice_confirmed")
        _publish_period_confirmed(buyer, period_row)
        record_audit(
            actor,
            "deduction.confirmed",
            period_row.stream,
            buyer.pk,
            {"period": period, "statistics": period_row.statistics},
        )
    return period_row


def _recheck(selections: Sequence[DeductionSelection], invoices: dict[int, Invoice]) -> None:
    """An invoice may have been voided, reversed or flagged since it was selected (§7): such a
    period is not confirmed until the selection is revoked."""
    errors: dict[int, list[RuleViolation]] = {}
    for index, selection in enumerate(selections):
        invoice = invoices[selection.invoice_id]
        if invoice.authority_flag in {AuthorityFlag.ABNORMAL, AuthorityFlag.OUT_OF_CONTROL} or (
            invoice.status in {InvoiceStatus.VOIDED, InvoiceStatus.FULLY_RED_FLUSHED}
        ):
            errors[index] = [
                RuleViolation(
                    "invoice",
                    "changed_since_selection",
                    _(
                        "%(number)s became %(mark)s after it was selected: revoke the "
                        "statistics, revoke its selection, then apply statistics again."
                    ),
                    {"number": invoice.number, "mark": invoice.status_mark[0]},
                )
            ]
    if errors:
        raise SelectionErrors(errors)


def do_close_period_for_return(actor: Actor, buyer: Organisation, period: str) -> DeductionPeriod:
    """Lock the deduction period when its VAT return is submitted (in the filing transaction).

    A period with pending selections must be confirmed first; one without selections is closed
    as confirmed-empty, so nothing can be selected into a filed period afterwards.
    """
    period_row = _locked_period(buyer, period)
    if period_row.is_confirmed:
        return period_row
    if _active_selections(period_row).exists():
        raise RuleViolation(
            "period",
            "deduction_not_confirmed",
            _(
                "Deduction period %(period)s has selections that are not confirmed: confirm it "
                "(确认签名) or revoke them before submitting the return."
            ),
            {"period": period},
        )
    period_row.status, period_row.confirmed_at = PeriodStatus.CONFIRMED, timezone.now()
    period_row.confirmed_by_label, period_row.closed_by_return = actor.label, True
    period_row.statistics = rules.statistics([], [])
    period_row.save()
    _publish_period_confirmed(buyer, period_row)
    record_audit(
        actor, "deduction.closed_by_return", period_row.stream, buyer.pk, {"period": period}
    )
    return period_row


__all__ = [
    "Purpose",
    "SelectionErrors",
    "SelectionItem",
    "do_apply_statistics",
    "do_book_invoice",
    "do_close_period_for_return",
    "do_confirm_deduction",
    "do_revoke_selection",
    "do_revoke_statistics",
    "do_select_for_deduction",
]
