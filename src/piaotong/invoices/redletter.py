"""Red-letter invoices (红字发票) through the confirmation workflow, and voiding (作废).

Terms: a blue invoice (蓝字发票) is reversed by a red-letter invoice with negative amounts,
issued after a red-letter information confirmation (红字发票信息确认单, "confirmation" here) that
one party files and the counterparty confirms (确认) or refuses (拒绝) within 72 hours; the
initiator may withdraw (撤销) it while it waits. The seller may reverse in full without the
buyer's confirmation (无需确认) while the buyer has neither booked (入账) nor confirmed use
(用途确认) of the invoice. Paper kinds may instead be voided (作废) within the month of issue
and before the buyer used them; 数电票 never (china-einvoice.md §6).

One writer per fact (ARCHITECTURE §5): a party's request or answer is written by the node of
that party's region, red invoices and voiding only by the seller's home node. When the
counterparty lives on another node, its answer arrives through the exchange and
`apply_remote_event` runs the same state changes as the local action (docs/red-letter.md lists
the event payloads).

Every step locks the blue invoice first, then appends its ledger event to the blue invoice's
stream, then issues the red invoice (quota, number), and only then writes the audit entries:
the lock order of issuing (invoice -> quota -> number sequence -> audit head) holds here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.exchange.actions import enqueue_events
from piaotong.invoices.actions import (
    _buyer_region,
    _issue_locked,
    _require,
    _require_approved,
    _require_home_node,
)
from piaotong.invoices.choices import (
    PARTIAL_REASONS,
    RED_LETTER_TRANSITIONS,
    RESERVING_RED_LETTER,
    BuyerKind,
    InvoiceStatus,
    RedLetterReason,
    RedLetterSide,
    RedLetterStatus,
)
from piaotong.invoices.models import Invoice, InvoiceLine, RedLetterConfirmation
from piaotong.invoices.redletter_rules import (
    BlueLine,
    RedLine,
    RedLineRequest,
    full_red_lines,
    is_fully_flushed,
    partial_red_lines,
    remaining,
    totals_of,
)
from piaotong.ledger.actions import append_event, record_audits
from piaotong.lib.errors import RuleViolation

RED_LETTER_WINDOW = timedelta(hours=72)

REQUESTED = "RedLetterRequested"
CONFIRMED = "RedLetterConfirmed"
REFUSED = "RedLetterRefused"
WITHDRAWN = "RedLetterWithdrawn"
EXPIRED = "RedLetterExpired"
RED_FLUSHED = "InvoiceRedFlushed"
VOIDED = "InvoiceVoided"

S = RedLetterStatus
Audit = tuple[str, str, int | None, dict[str, Any]]


# --- Who may act where -------------------------------------------------------------------


def buyer_usage_of(invoice: Invoice) -> str:
    """What the buyer did with the invoice: "" nothing, "booked", "selected", "confirmed".

    A natural person neither books nor deducts, so their invoices are always unused.
    """
    if invoice.buyer_kind == BuyerKind.PERSON:
        return ""
    from piaotong.deduction.queries import buyer_usage  # deduction imports invoices

    return buyer_usage(invoice)


def party(invoice: Invoice, side: str) -> Organisation | None:
    """The organisation on `side` of the invoice, if it is registered on this node."""
    return invoice.seller if side == RedLetterSide.SELLER else invoice.buyer


def side_region(invoice: Invoice, side: str) -> str:
    return invoice.seller.region if side == RedLetterSide.SELLER else _buyer_region(invoice)


def is_local_side(invoice: Invoice, side: str) -> bool:
    """Whether this node writes the facts of `side` for this invoice (its region's node)."""
    return side_region(invoice, side) == settings.PIAOTONG_REGION


def _require_local_side(invoice: Invoice, side: str) -> None:
    if not is_local_side(invoice, side):
        raise RuleViolation(
            "side",
            "other_node",
            _(
                "The %(side)s of this invoice is served by the node of region %(region)s; this "
                "node serves region %(node)s. Act on the node of region %(region)s: its answer "
                "reaches this node through the exchange."
            ),
            {
                "side": RedLetterSide(side).label,
                "region": side_region(invoice, side) or "?",
                "node": settings.PIAOTONG_REGION,
            },
        )


def _party_for(actor: Actor, invoice: Invoice, side: str) -> Organisation:
    organisation = party(invoice, side)
    if organisation is None:
        raise RuleViolation(
            "side",
            "buyer_not_registered",
            _(
                "The buyer of this invoice is not an organisation registered on the platform, so "
                "it can neither file nor answer a red-letter request."
            ),
        )
    _require(actor, Action.REQUEST_RED_LETTER, organisation)
    return organisation


def sides_for(actor: Actor, invoice: Invoice) -> list[RedLetterSide]:
    """The sides the actor may file a red-letter request for on this invoice, on this node."""
    return [
        side
        for side in RedLetterSide
        if (org := party(invoice, side)) is not None
        and actor.can(Action.REQUEST_RED_LETTER, org.pk)
        and is_local_side(invoice, side)
    ]


# --- Rows and events -----------------------------------------------------------------------


def _lock(invoice: Invoice) -> Invoice:
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("seller", "buyer", "red_of")
        .get(pk=invoice.pk)
    )


def _lock_confirmation(confirmation: RedLetterConfirmation) -> RedLetterConfirmation:
    return RedLetterConfirmation.objects.select_for_update().get(pk=confirmation.pk)


def blue_lines(blue: Invoice) -> list[BlueLine]:
    """The blue invoice's lines with what open and issued confirmations have not yet taken."""
    taken = [
        RedLine.from_json(item)
        for lines in blue.red_letter_confirmations.filter(
            status__in=RESERVING_RED_LETTER
        ).values_list("lines", flat=True)
        for item in lines
    ]
    rows = blue.lines.order_by("position").values_list(
        "position", "kind", "tax_rate", "amount", "tax", "quantity", "unit_price"
    )
    return remaining(list(rows), taken)


def _append(blue: Invoice, kind: str, payload: dict[str, Any]) -> None:
    """One ledger event on the blue invoice's stream and its outbox row (seller -> buyer)."""
    event = append_event(blue.stream, kind, payload)
    enqueue_events([(event, blue.seller.region, _buyer_region(blue))])


def request_payload(confirmation: RedLetterConfirmation) -> dict[str, Any]:
    blue = confirmation.blue_invoice
    return {
        "confirmation": confirmation.uid,
        "blue_number": blue.number,
        "initiator_side": confirmation.initiator_side,
        "initiator": {"name": confirmation.initiator_name},
        "reason": confirmation.reason,
        "full": confirmation.is_full,
        "lines": confirmation.lines,
        "total_amount": confirmation.total_amount,
        "total_tax": confirmation.total_tax,
        "total_with_tax": confirmation.total_with_tax,
        "confirmation_required": confirmation.confirmation_required,
        "requested_by": confirmation.requested_by_label,
        "created_at": confirmation.created_at,
        "expires_at": confirmation.expires_at,
    }


def _status_error(confirmation: RedLetterConfirmation) -> RuleViolation:
    return RuleViolation(
        "status",
        "wrong_status",
        _("This red-letter request is %(status)s; only a request awaiting an answer can change."),
        {"status": confirmation.get_status_display()},
    )


def _move(confirmation: RedLetterConfirmation, target: RedLetterStatus) -> None:
    if target not in RED_LETTER_TRANSITIONS[RedLetterStatus(confirmation.status)]:
        raise _status_error(confirmation)
    confirmation.status = target


# --- Filing a request ----------------------------------------------------------------------


@dataclass(frozen=True)
class RedLetterInput:
    """What a party files: a reason, full or partial, and for a partial the lines and amounts."""

    reason: str
    full: bool = True
    lines: Sequence[RedLineRequest] = field(default_factory=tuple)


def _check_input(data: RedLetterInput) -> RedLetterReason:
    if data.reason not in RedLetterReason.values:
        raise RuleViolation(
            "reason",
            "invalid_reason",
            _("Choose a reason: 01 开票有误, 02 销货退回, 03 服务终止 or 04 销售折让."),
        )
    reason = RedLetterReason(data.reason)
    if not data.full and reason not in PARTIAL_REASONS:
        raise RuleViolation(
            "full",
            "partial_not_allowed",
            _(
                "A partial reversal is allowed only for a sales return (销货退回) or a sales "
                "allowance (销售折让); for %(reason)s reverse the whole invoice."
            ),
            {"reason": reason.label},
        )
    return reason


def _check_blue(blue: Invoice) -> None:
    if blue.is_red:
        raise RuleViolation(
            "invoice",
            "red_invoice",
            _("This is itself a red-letter invoice; only blue invoices are reversed."),
        )
    if not blue.can_transition_to(InvoiceStatus.PARTIALLY_RED_FLUSHED):
        raise RuleViolation(
            "invoice",
            "not_reversible",
            _("The invoice is %(status)s and cannot be reversed."),
            {"status": blue.get_status_display()},
        )


def _needs_confirmation(blue: Invoice, side: RedLetterSide, full: bool) -> bool:
    """No confirmation (无需确认) only for the seller's full reversal of an invoice the buyer
    has neither booked nor confirmed; when that is unknown, confirmation is required."""
    if side != RedLetterSide.SELLER or not full:
        return True
    return buyer_usage_of(blue) != ""


def _require_answerable(blue: Invoice, side: RedLetterSide) -> None:
    """A request that needs confirmation needs a counterparty able to give it: an organisation
    here, or one served by another node (its answer comes by the exchange)."""
    counterparty = RedLetterSide.BUYER if side == RedLetterSide.SELLER else RedLetterSide.SELLER
    if party(blue, counterparty) is not None:
        return
    remote = not is_local_side(blue, counterparty) and bool(side_region(blue, counterparty))
    if blue.buyer_kind != BuyerKind.PERSON and remote:
        return
    raise RuleViolation(
        "side",
        "buyer_not_registered",
        _(
            "The buyer is not an organisation on the platform and cannot confirm a request. "
            "Only a full reversal, which needs no confirmation, is possible."
        ),
    )


def do_request_red_letter(
    actor: Actor, invoice: Invoice, side: str, data: RedLetterInput
) -> RedLetterConfirmation:
    """File a 红字发票信息确认单 for `side` of the invoice; issue at once if none is needed."""
    side = RedLetterSide(side)
    initiator = _party_for(actor, invoice, side)
    _require_local_side(invoice, side)
    reason = _check_input(data)
    now = timezone.now()
    with transaction.atomic():
        blue = _lock(invoice)
        _check_blue(blue)
        lines = blue_lines(blue)
        red = full_red_lines(lines) if data.full else partial_red_lines(lines, data.lines)
        totals = totals_of(red)
        needed = _needs_confirmation(blue, side, data.full)
        if needed:
            _require_answerable(blue, side)
        confirmation = RedLetterConfirmation.objects.create(
            blue_invoice=blue,
            initiator_side=side,
            initiator=initiator,
            initiator_name=initiator.name,
            reason=reason,
            is_full=data.full,
            lines=[line.as_json() for line in red],
            total_amount=totals.amount,
            total_tax=totals.tax,
            total_with_tax=totals.total,
            status=S.PENDING if needed else S.NO_CONFIRMATION_NEEDED,
            confirmation_required=needed,
            requested_by=actor.user,
            requested_by_label=actor.label,
            created_at=now,
            expires_at=now + RED_LETTER_WINDOW,
        )
        _append(blue, REQUESTED, request_payload(confirmation))
        audits: list[Audit] = []
        if not needed:
            audits += _issue_red(actor, blue, confirmation)
        details = {
            "confirmation": confirmation.uid,
            "reason": reason.value,
            "full": data.full,
            "total": totals.total,
            "confirmation_required": needed,
        }
        record_audits(
            actor, [("red_letter.requested", blue.stream, initiator.pk, details), *audits]
        )
    return confirmation


# --- Issuing the red invoice (seller's home node) --------------------------------------------


def _red_invoice(actor: Actor, blue: Invoice, confirmation: RedLetterConfirmation) -> Invoice:
    # The seller's person is the issuer (开票人): who filed it, or who confirmed the buyer's.
    by_seller = confirmation.initiator_side == RedLetterSide.SELLER
    return Invoice(
        kind=blue.kind,
        seller=blue.seller,
        seller_name=blue.seller_name,
        seller_tax_id=blue.seller_tax_id,
        seller_address=blue.seller_address,
        seller_bank=blue.seller_bank,
        buyer=blue.buyer,
        buyer_kind=blue.buyer_kind,
        buyer_name=blue.buyer_name,
        buyer_tax_id=blue.buyer_tax_id,
        buyer_address=blue.buyer_address,
        buyer_bank=blue.buyer_bank,
        buyer_email=blue.buyer_email,
        buyer_phone=blue.buyer_phone,
        total_amount=confirmation.total_amount,
        total_tax=confirmation.total_tax,
        total_with_tax=confirmation.total_with_tax,
        remarks=f"被红冲蓝字发票号码：{blue.number} 红字发票信息确认单编号：{confirmation.uid.hex}",
        created_by=confirmation.requested_by if by_seller else actor.user,
        created_by_key=actor.api_key,
        created_by_label=confirmation.requested_by_label if by_seller else actor.label,
        red_of=blue,
    )


def _red_lines(
    red: Invoice, blue: Invoice, confirmation: RedLetterConfirmation
) -> list[InvoiceLine]:
    originals = {line.position: line for line in blue.lines.all()}
    lines = []
    for position, item in enumerate(confirmation.lines, start=1):
        taken = RedLine.from_json(item)
        original = originals[taken.position]
        lines.append(
            InvoiceLine(
                invoice=red,
                position=position,
                kind=original.kind,
                tax_code=original.tax_code,
                item_name=original.item_name,
                printed_name=original.printed_name,
                spec=original.spec,
                unit=original.unit,
                quantity=taken.quantity,
                unit_price=original.unit_price if taken.quantity is not None else None,
                amount=taken.amount,
                tax_rate=original.tax_rate,
                tax=taken.tax,
            )
        )
    return lines


def _issue_red(actor: Actor, blue: Invoice, confirmation: RedLetterConfirmation) -> list[Audit]:
    """Issue the red invoice of a confirmation through the issuing path (quota, number,
    signature, InvoiceIssued, outbox), then mark the blue invoice; returns the audit entries
    still to write (the caller writes them last, after the number sequence's lock)."""
    _require_home_node(blue.seller)
    _require_approved(blue.seller)
    red = _red_invoice(actor, blue, confirmation)
    _issue_locked([red], actor, [_red_lines(red, blue, confirmation)], created=True)
    _move(confirmation, S.ISSUED)
    confirmation.red_invoice, confirmation.red_number = red, red.number or ""
    confirmation.save(update_fields=["status", "red_invoice", "red_number", "updated_at"])
    lines = blue_lines(blue)
    blue.status = (
        InvoiceStatus.FULLY_RED_FLUSHED
        if is_fully_flushed(lines)
        else InvoiceStatus.PARTIALLY_RED_FLUSHED
    )
    blue.save(update_fields=["status", "updated_at"])
    payload = {
        "confirmation": confirmation.uid,
        "blue_number": blue.number,
        "red_number": red.number,
        "total_amount": red.total_amount,
        "total_tax": red.total_tax,
        "total_with_tax": red.total_with_tax,
        "status": blue.status,
        "remaining_amount": sum(line.remaining_amount for line in lines),
        "remaining_tax": sum(line.remaining_tax for line in lines),
    }
    _append(blue, RED_FLUSHED, payload)
    details = {"red_number": red.number, "confirmation": confirmation.uid, "status": blue.status}
    return [("invoice.red_flushed", blue.stream, blue.seller_id, details)]


# --- Answers: confirm, refuse, withdraw, expire -----------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The counterparty's answer, local or received from its node."""

    side: RedLetterSide
    confirmed: bool
    at: datetime
    by_label: str
    reason: str = ""


def _record_answer(
    actor: Actor,
    blue: Invoice,
    confirmation: RedLetterConfirmation,
    answer: Answer,
    *,
    local: bool,
    issue_red: bool = True,
) -> list[Audit]:
    """The one state change of an answer, for the local action and for a received event.

    Locally the answer becomes a ledger event with its outbox row; a received answer is already
    the other node's event. On the seller's home node a confirmation issues the red invoice
    (unless `issue_red` is false: the node's own answer replayed, see `replay_own_event`).
    """
    _move(confirmation, S.CONFIRMED if answer.confirmed else S.REFUSED)
    confirmation.answered_at, confirmation.answered_by_label = answer.at, answer.by_label
    confirmation.answered_by = actor.user if local else None
    confirmation.refusal_reason = answer.reason[:500]
    confirmation.save()
    if local:
        payload = {
            "confirmation": confirmation.uid,
            "blue_number": blue.number,
            "by": answer.side,
            "answered_by": answer.by_label,
            "answered_at": answer.at,
        } | ({} if answer.confirmed else {"reason": confirmation.refusal_reason})
        _append(blue, CONFIRMED if answer.confirmed else REFUSED, payload)
    audits: list[Audit] = []
    if answer.confirmed and issue_red and is_local_side(blue, RedLetterSide.SELLER):
        audits += _issue_red(actor, blue, confirmation)
    verb = "red_letter.confirmed" if answer.confirmed else "red_letter.refused"
    organisation = party(blue, answer.side)
    details = {"confirmation": confirmation.uid, "by": answer.side, "reason": answer.reason}
    return [(verb, blue.stream, organisation.pk if organisation else None, details), *audits]


def _answer(
    actor: Actor, confirmation: RedLetterConfirmation, *, confirmed: bool, reason: str = ""
) -> RedLetterConfirmation:
    blue = confirmation.blue_invoice
    side = confirmation.counterparty_side
    _party_for(actor, blue, side)
    _require_local_side(blue, side)
    if not confirmed and not reason.strip():
        raise RuleViolation(
            "reason",
            "required",
            _("Say why you refuse, so the other party can correct the request."),
        )
    now = timezone.now()
    with transaction.atomic():
        blue = _lock(blue)
        confirmation = _lock_confirmation(confirmation)
        if confirmation.status != S.PENDING:
            raise _status_error(confirmation)
        if confirmation.expires_at <= now:
            raise RuleViolation(
                "status",
                "expired",
                _("The 72 hours to answer this request have passed; it can no longer be answered."),
            )
        answer = Answer(side, confirmed, now, actor.label, reason.strip())
        record_audits(actor, _record_answer(actor, blue, confirmation, answer, local=True))
    return confirmation


def do_confirm_red_letter(
    actor: Actor, confirmation: RedLetterConfirmation
) -> RedLetterConfirmation:
    """The counterparty agrees (确认); on the seller's home node the red invoice is issued."""
    return _answer(actor, confirmation, confirmed=True)


def do_refuse_red_letter(
    actor: Actor, confirmation: RedLetterConfirmation, reason: str
) -> RedLetterConfirmation:
    """The counterparty refuses (拒绝), with a reason."""
    return _answer(actor, confirmation, confirmed=False, reason=reason)


def _close(
    actor: Actor,
    blue: Invoice,
    confirmation: RedLetterConfirmation,
    target: RedLetterStatus,
    side: RedLetterSide,
    *,
    local: bool,
    at: datetime,
) -> list[Audit]:
    """Withdrawal by the initiator or expiry: the request ends without a red invoice."""
    _move(confirmation, target)
    confirmation.closed_at = at
    confirmation.save(update_fields=["status", "closed_at", "updated_at"])
    if local:
        payload = {
            "confirmation": confirmation.uid,
            "blue_number": blue.number,
            "by": side,
            "at": at,
        }
        _append(blue, WITHDRAWN if target == S.WITHDRAWN else EXPIRED, payload)
    verb = "red_letter.withdrawn" if target == S.WITHDRAWN else "red_letter.expired"
    organisation = party(blue, side)
    details = {"confirmation": confirmation.uid, "by": side}
    return [(verb, blue.stream, organisation.pk if organisation else None, details)]


def do_withdraw_red_letter(
    actor: Actor, confirmation: RedLetterConfirmation
) -> RedLetterConfirmation:
    """The initiator withdraws (撤销) a request the counterparty has not answered."""
    blue = confirmation.blue_invoice
    side = RedLetterSide(confirmation.initiator_side)
    _party_for(actor, blue, side)
    _require_local_side(blue, side)
    with transaction.atomic():
        blue = _lock(blue)
        confirmation = _lock_confirmation(confirmation)
        if confirmation.status != S.PENDING:
            raise _status_error(confirmation)
        audits = _close(actor, blue, confirmation, S.WITHDRAWN, side, local=True, at=timezone.now())
        record_audits(actor, audits)
    return confirmation


def expire_red_letter_requests(now: datetime | None = None) -> int:
    """Close every request not answered within 72 hours (超时作废); returns how many.

    The node of the side that should have answered writes the expiry, as it would have written
    the answer; running it again finds nothing more to do.
    """
    now = now or timezone.now()
    due = RedLetterConfirmation.objects.filter(status=S.PENDING, expires_at__lte=now)
    system = Actor()
    count = 0
    for confirmation in due.select_related("blue_invoice__seller", "blue_invoice__buyer"):
        side = confirmation.counterparty_side
        if not is_local_side(confirmation.blue_invoice, side):
            continue
        with transaction.atomic():
            blue = _lock(confirmation.blue_invoice)
            confirmation = _lock_confirmation(confirmation)
            if confirmation.status != S.PENDING or confirmation.expires_at > now:
                continue
            record_audits(
                system, _close(system, blue, confirmation, S.EXPIRED, side, local=True, at=now)
            )
            count += 1
    return count


# --- Events received from the other party's node ------------------------------------------------


class NotYetKnown(LookupError):
    """The event refers to an invoice or request this node has not received yet: park it."""


def _received_confirmation(payload: dict[str, Any]) -> RedLetterConfirmation:
    found = (
        RedLetterConfirmation.objects.select_related("blue_invoice")
        .filter(uid=str(payload["confirmation"]))
        .first()
    )
    if found is None:
        raise NotYetKnown(f"red-letter confirmation {payload['confirmation']}")
    return found


def _receive_request(payload: dict[str, Any]) -> RedLetterConfirmation:
    existing = RedLetterConfirmation.objects.filter(uid=str(payload["confirmation"])).first()
    if existing is not None:
        return existing  # delivered twice
    blue = Invoice.objects.filter(number=str(payload["blue_number"])).first()
    if blue is None:
        raise NotYetKnown(f"invoice {payload['blue_number']}")
    blue = _lock(blue)
    side = RedLetterSide(str(payload["initiator_side"]))
    needed = bool(payload["confirmation_required"])
    confirmation = RedLetterConfirmation.objects.create(
        uid=str(payload["confirmation"]),
        blue_invoice=blue,
        initiator_side=side,
        initiator=party(blue, side),
        initiator_name=str(payload["initiator"]["name"]),
        reason=str(payload["reason"]),
        is_full=bool(payload["full"]),
        lines=list(payload["lines"]),
        total_amount=str(payload["total_amount"]),
        total_tax=str(payload["total_tax"]),
        total_with_tax=str(payload["total_with_tax"]),
        status=S.PENDING if needed else S.NO_CONFIRMATION_NEEDED,
        confirmation_required=needed,
        requested_by_label=str(payload["requested_by"]),
        created_at=datetime.fromisoformat(str(payload["created_at"])),
        expires_at=datetime.fromisoformat(str(payload["expires_at"])),
    )
    confirmation.refresh_from_db()
    record_audits(
        Actor(),
        [("red_letter.received", blue.stream, None, {"confirmation": confirmation.uid})],
    )
    return confirmation


def _receive_flushed(payload: dict[str, Any]) -> RedLetterConfirmation:
    """The seller's node issued the red invoice: its facts win over any local state."""
    confirmation = _received_confirmation(payload)
    blue = _lock(confirmation.blue_invoice)
    confirmation = _lock_confirmation(confirmation)
    confirmation.status = S.ISSUED
    confirmation.red_number = str(payload["red_number"])
    confirmation.red_invoice = Invoice.objects.filter(number=confirmation.red_number).first()
    confirmation.save(update_fields=["status", "red_number", "red_invoice", "updated_at"])
    blue.status = InvoiceStatus(str(payload["status"]))
    blue.save(update_fields=["status", "updated_at"])
    details = {"confirmation": confirmation.uid, "red_number": confirmation.red_number}
    record_audits(Actor(), [("invoice.red_flushed_received", blue.stream, None, details)])
    return confirmation


def _receive_answer(
    kind: str, payload: dict[str, Any], *, issue_red: bool = True
) -> RedLetterConfirmation:
    confirmation = _received_confirmation(payload)
    blue = _lock(confirmation.blue_invoice)
    confirmation = _lock_confirmation(confirmation)
    side = RedLetterSide(str(payload["by"]))
    system = Actor()
    # The seller's node decides whether a red invoice exists: its word overrides an answer the
    # buyer's node recorded meanwhile; the buyer's word counts only while the request waits.
    open_states = {S.PENDING, S.CONFIRMED} if side == RedLetterSide.SELLER else {S.PENDING}
    if confirmation.status not in open_states:
        details = {"confirmation": confirmation.uid, "event": kind, "status": confirmation.status}
        record_audits(system, [("red_letter.superseded", blue.stream, None, details)])
        return confirmation
    if kind in {CONFIRMED, REFUSED}:
        at = datetime.fromisoformat(str(payload["answered_at"]))
        by, reason = str(payload["answered_by"]), str(payload.get("reason", ""))
        answer = Answer(side, kind == CONFIRMED, at, by, reason)
        audits = _record_answer(
            system, blue, confirmation, answer, local=False, issue_red=issue_red
        )
    else:
        target = S.WITHDRAWN if kind == WITHDRAWN else S.EXPIRED
        at = datetime.fromisoformat(str(payload["at"]))
        audits = _close(system, blue, confirmation, target, side, local=False, at=at)
    record_audits(system, audits)
    return confirmation


def apply_remote_event(kind: str, payload: dict[str, Any]) -> RedLetterConfirmation | Invoice:
    """Apply a red-letter or void event written by another node (called by the exchange
    consumer, in its transaction with the inbox row). Raises NotYetKnown when the invoice or
    request has not arrived yet, so the consumer parks the event."""
    with transaction.atomic():
        if kind == REQUESTED:
            return _receive_request(payload)
        if kind == RED_FLUSHED:
            return _receive_flushed(payload)
        if kind in {CONFIRMED, REFUSED, WITHDRAWN, EXPIRED}:
            return _receive_answer(kind, payload)
        if kind == VOIDED:
            return _receive_voided(payload)
    raise ValueError(f"not a red-letter or void event: {kind}")


def replay_own_event(kind: str, payload: dict[str, Any]) -> RedLetterConfirmation | Invoice:
    """Rebuild what one of this node's own red-letter or void events recorded, when the node,
    restored from an old backup, takes it back from the hub (exchange.recovery).

    As `apply_remote_event`, except for a confirmation (确认) on the seller's home node: the
    action issued the red invoice with it, and that red invoice and its flush are this node's
    own next events, taken back after this one; issuing here would give a second red invoice
    a new number. So only the answer is recorded (PENDING -> CONFIRMED), whichever side gave it
    (the buyer too, when this node serves both parties).
    """
    if kind != CONFIRMED:
        return apply_remote_event(kind, payload)
    with transaction.atomic():
        return _receive_answer(kind, payload, issue_red=False)


def writer_side(kind: str, payload: dict[str, Any]) -> RedLetterSide:
    """Whose fact an event states, so the receiving node can check that the right node wrote
    it: a request is the initiator's, an answer, withdrawal or expiry the side named in "by",
    a red flush or a void always the seller's."""
    if kind == REQUESTED:
        return RedLetterSide(str(payload["initiator_side"]))
    if kind in {CONFIRMED, REFUSED, WITHDRAWN, EXPIRED}:
        return RedLetterSide(str(payload["by"]))
    return RedLetterSide.SELLER


HANDLED_EVENTS = frozenset({REQUESTED, CONFIRMED, REFUSED, WITHDRAWN, EXPIRED, RED_FLUSHED, VOIDED})


# --- Voiding (作废) ------------------------------------------------------------------------------


def _void_violation(code: str, message: Any, params: dict[str, Any] | None = None) -> RuleViolation:
    return RuleViolation("invoice", code, message, params or {})


def check_voidable(invoice: Invoice, today: date) -> None:
    """Whether a paper invoice may still be voided on `today` (Asia/Shanghai); raises if not."""
    if not invoice.is_paper:
        raise _void_violation(
            "digital_not_voidable",
            _("A 数电票 can never be voided; reverse it with a red-letter invoice (红冲) instead."),
        )
    if invoice.is_red or not invoice.can_be_voided():
        raise _void_violation(
            "not_voidable",
            _("The invoice is %(status)s; only an issued blue invoice can be voided."),
            {"status": invoice.get_status_display()},
        )
    if invoice.issue_date is None or (invoice.issue_date.year, invoice.issue_date.month) != (
        today.year,
        today.month,
    ):
        raise _void_violation(
            "month_passed",
            _(
                "A paper invoice can be voided only within the month it was issued; reverse this "
                "one with a red-letter invoice (红冲) instead."
            ),
        )
    if invoice.red_letter_confirmations.exclude(
        status__in=[S.REFUSED, S.EXPIRED, S.WITHDRAWN]
    ).exists():
        raise _void_violation(
            "red_letter_open",
            _("A red-letter request exists for this invoice; it cannot also be voided."),
        )
    usage = buyer_usage_of(invoice)
    if usage:
        raise _void_violation(
            "buyer_used",
            _(
                "The buyer has already booked or used this invoice (%(usage)s); reverse it with "
                "a red-letter invoice (红冲) instead."
            ),
            {"usage": usage},
        )


def do_void_invoice(actor: Actor, invoice: Invoice, reason: str) -> Invoice:
    """Void (作废) a paper invoice of this month that the buyer has not used."""
    _require(actor, Action.VOID_INVOICE, invoice.seller)
    _require_home_node(invoice.seller)
    if not reason.strip():
        raise RuleViolation("reason", "required", _("Say why the invoice is voided."))
    with transaction.atomic():
        invoice = _lock(invoice)
        check_voidable(invoice, timezone.localdate())
        invoice.status, invoice.voided_at = InvoiceStatus.VOIDED, timezone.now()
        invoice.save(update_fields=["status", "voided_at", "updated_at"])
        payload = {
            "number": invoice.number,
            "reason": reason.strip()[:500],
            "voided_at": invoice.voided_at,
        }
        _append(invoice, VOIDED, payload)
        details = {"number": invoice.number, "reason": reason.strip()[:500]}
        record_audits(actor, [("invoice.voided", invoice.stream, invoice.seller_id, details)])
    return invoice


def _receive_voided(payload: dict[str, Any]) -> Invoice:
    invoice = Invoice.objects.filter(number=str(payload["number"])).first()
    if invoice is None:
        raise NotYetKnown(f"invoice {payload['number']}")
    invoice = _lock(invoice)
    if invoice.status != InvoiceStatus.VOIDED:
        invoice.status = InvoiceStatus.VOIDED
        invoice.voided_at = datetime.fromisoformat(str(payload["voided_at"]))
        invoice.save(update_fields=["status", "voided_at", "updated_at"])
        details = {"number": invoice.number}
        record_audits(Actor(), [("invoice.voided_received", invoice.stream, None, details)])
    return invoice
