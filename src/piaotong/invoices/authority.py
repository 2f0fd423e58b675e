"""Authority flags (税务机关标记): 失控 (out of control) and 异常 (abnormal) on issued invoices.

Terms: a tax officer (税务人员) of a tax bureau (税务机关) flags an issued invoice as out of control
(失控) or abnormal (异常), or clears (解除) the flag, always with a reason. A flag overrides the
invoice's status mark in verification (`choices.status_mark`) and blocks booking and deduction
(`deduction.rules`).

One writer per fact (ARCHITECTURE §5): authority facts are written only by the hub (the national
platform). The action runs only on the hub node, writes `AuthorityFlagSet` or
`AuthorityFlagCleared` to the invoice's ledger stream under the hub's node id and queues it for
the seller's and the buyer's nodes, which apply it through `apply_received_flag` (registered in
`invoices.appliers`); their consumers refuse (quarantine) the same kinds from any other writer.

Who may flag: a user holding a role with `Action.FLAG_INVOICE` (the tax officer) in an approved
tax bureau, over invoices whose seller is in the bureau's region; a bureau of the national region
(`00`, 国家税务总局) covers every region. A taxpayer's own members never flag.

The invoice row holds the current flag; the ledger holds its history (`flag_history`). A node
that receives the events sets the row from the last authority event of the stream, so applying
an event twice, or an older one again (reconciliation re-runs apply-functions), changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.choices import OrganisationKind, OrganisationStatus
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.exchange.actions import enqueue_events
from piaotong.exchange.nodes import this_node
from piaotong.invoices.actions import _buyer_region
from piaotong.invoices.choices import AuthorityFlag, InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceQuerySet
from piaotong.ledger.actions import append_event, record_audit
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.errors import RuleViolation, raise_all
from piaotong.lib.regions import NATIONAL_CODE

SET_EVENT = "AuthorityFlagSet"
CLEARED_EVENT = "AuthorityFlagCleared"
EVENTS = frozenset({SET_EVENT, CLEARED_EVENT})
FLAGS = frozenset({AuthorityFlag.OUT_OF_CONTROL, AuthorityFlag.ABNORMAL})
REASON_MAX = 500
UNFLAGGABLE = frozenset({InvoiceStatus.DRAFT, InvoiceStatus.PENDING_REVIEW, InvoiceStatus.VOIDED})


# --- Who may flag what ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagScope:
    """The tax bureaus in which an actor flags, and the seller regions they cover."""

    bureaus: tuple[Organisation, ...]

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(bureau.region for bureau in self.bureaus)

    @property
    def is_national(self) -> bool:
        return NATIONAL_CODE in self.regions

    def __bool__(self) -> bool:
        return bool(self.bureaus)

    def covers(self, region: str) -> bool:
        return self.is_national or region in self.regions

    def bureau_for(self, region: str) -> Organisation | None:
        """The bureau that acts on an invoice of `region`: the region's own before a national."""
        ranked = sorted(self.bureaus, key=lambda b: (b.region != region, b.pk))
        return next((b for b in ranked if b.region in {region, NATIONAL_CODE}), None)


def flag_scope(actor: Actor) -> FlagScope:
    """Approved tax bureaus where the actor's roles allow flagging (no query without a grant)."""
    bureau_ids = actor.organisation_ids(Action.FLAG_INVOICE)
    if actor.user is None or not bureau_ids:
        return FlagScope(())
    bureaus = Organisation.objects.filter(
        pk__in=bureau_ids,
        kind=OrganisationKind.TAX_BUREAU,
        status=OrganisationStatus.APPROVED,
    ).order_by("pk")
    return FlagScope(tuple(bureaus))


def require_flag_scope(actor: Actor) -> FlagScope:
    scope = flag_scope(actor)
    if not scope:
        raise PermissionDenied(_("Only a tax officer of a tax bureau sets or clears such flags."))
    return scope


def flaggable_invoices(scope: FlagScope) -> InvoiceQuerySet:
    """Issued invoices (never drafts) whose seller is in a region the scope covers."""
    invoices = Invoice.objects.filter(number__isnull=False)
    if scope.is_national:
        return invoices
    return invoices.filter(seller__region__in=sorted(scope.regions))


def get_flaggable_invoice(scope: FlagScope, ref: str) -> Invoice:
    """An invoice by uid or number within the scope, or 404 (its existence is not revealed)."""
    try:
        lookup = Q(uid=uuid.UUID(ref))
    except ValueError:
        lookup = Q(number=ref.strip())
    found = flaggable_invoices(scope).select_related("seller", "buyer").filter(lookup).first()
    if found is None:
        raise Http404("No such invoice")
    return found


def is_hub() -> bool:
    return this_node().is_hub


# --- Checks -----------------------------------------------------------------------------------


def _require_hub() -> None:
    node = this_node()
    if not node.is_hub:
        raise RuleViolation(
            "node",
            "not_hub",
            _(
                "Authority flags are set and cleared only at the hub (the national platform); "
                "this is the node of region %(region)s. Act at the hub: the flag reaches this "
                "node through the exchange."
            ),
            {"region": node.region},
        )


def _bureau(actor: Actor, invoice: Invoice) -> Organisation:
    region = invoice.seller.region
    bureau = require_flag_scope(actor).bureau_for(region)
    if bureau is None:
        raise PermissionDenied(f"{actor.label} flags no invoices of region {region}")
    return bureau


def _reason_errors(reason: str) -> list[RuleViolation]:
    text = reason.strip()
    if not text:
        return [
            RuleViolation(
                "reason",
                "required",
                _("Give the reason for the decision; the seller and the buyer are told of it."),
            )
        ]
    if len(text) > REASON_MAX:
        return [
            RuleViolation(
                "reason",
                "too_long",
                _("Keep the reason to %(max)s characters."),
                {"max": REASON_MAX},
            )
        ]
    return []


def _flag_errors(flag: str) -> list[RuleViolation]:
    if flag in FLAGS:
        return []
    return [
        RuleViolation(
            "flag",
            "invalid_flag",
            _("Choose the flag: out_of_control (失控) or abnormal (异常)."),
        )
    ]


def _check_flaggable(invoice: Invoice) -> None:
    if invoice.number is None or invoice.status in {
        InvoiceStatus.DRAFT,
        InvoiceStatus.PENDING_REVIEW,
    }:
        raise RuleViolation(
            "invoice",
            "not_issued",
            _("Only an issued invoice can be flagged; this one is %(status)s."),
            {"status": invoice.get_status_display()},
        )
    if invoice.status == InvoiceStatus.VOIDED:
        raise RuleViolation(
            "invoice",
            "voided",
            _("A voided invoice (作废) is no longer valid and cannot be flagged."),
        )


def _flag_label(flag: str) -> Any:
    return AuthorityFlag(flag).label if flag in AuthorityFlag.values else flag


# --- Actions ----------------------------------------------------------------------------------


def _lock(invoice: Invoice) -> Invoice:
    return (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("seller", "buyer")
        .get(pk=invoice.pk)
    )


def _record(
    actor: Actor,
    invoice: Invoice,
    bureau: Organisation,
    kind: str,
    payload: dict[str, Any],
) -> None:
    """The row change is saved; append the hub's event, queue it for both parties, audit."""
    event = append_event(invoice.stream, kind, payload)
    enqueue_events([(event, invoice.seller.region, _buyer_region(invoice))])
    verb = "invoice.authority_flag_set" if kind == SET_EVENT else "invoice.authority_flag_cleared"
    details: dict[str, Any] = {
        key: payload[key] for key in ("number", "flag", "previous", "reason") if key in payload
    }
    record_audit(actor, verb, invoice.stream, bureau.pk, details)


def do_set_authority_flag(actor: Actor, invoice: Invoice, flag: str, reason: str) -> Invoice:
    """Flag an issued invoice 失控 or 异常 (or change one flag into the other), at the hub."""
    bureau = _bureau(actor, invoice)
    _require_hub()
    raise_all(_flag_errors(flag) + _reason_errors(reason))
    with transaction.atomic():
        invoice = _lock(invoice)
        _check_flaggable(invoice)
        previous = invoice.authority_flag
        if previous == flag:
            raise RuleViolation(
                "flag",
                "already_flagged",
                _("The invoice is already flagged %(flag)s."),
                {"flag": _flag_label(flag)},
            )
        invoice.authority_flag, invoice.flagged_at = flag, timezone.now()
        invoice.save(update_fields=["authority_flag", "flagged_at", "updated_at"])
        payload = {
            "number": invoice.number,
            "flag": flag,
            "previous": previous,
            "reason": reason.strip(),
            "flagged_at": invoice.flagged_at,
            "by": actor.label,
            "authority": {"name": bureau.name, "tax_id": bureau.tax_id},
        }
        _record(actor, invoice, bureau, SET_EVENT, payload)
    return invoice


def do_clear_authority_flag(actor: Actor, invoice: Invoice, reason: str) -> Invoice:
    """Lift (解除) the flag of an invoice, at the hub."""
    bureau = _bureau(actor, invoice)
    _require_hub()
    raise_all(_reason_errors(reason))
    with transaction.atomic():
        invoice = _lock(invoice)
        previous = invoice.authority_flag
        if not previous:
            raise RuleViolation(
                "flag", "not_flagged", _("The invoice carries no flag; there is nothing to clear.")
            )
        invoice.authority_flag, invoice.flagged_at = AuthorityFlag.NONE, None
        invoice.save(update_fields=["authority_flag", "flagged_at", "updated_at"])
        payload = {
            "number": invoice.number,
            "previous": previous,
            "reason": reason.strip(),
            "cleared_at": timezone.now(),
            "by": actor.label,
            "authority": {"name": bureau.name, "tax_id": bureau.tax_id},
        }
        _record(actor, invoice, bureau, CLEARED_EVENT, payload)
    return invoice


# --- History ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagChange:
    """One authority event of an invoice, as its ledger stream holds it."""

    kind: str
    flag: str
    previous: str
    reason: str
    at: datetime
    by: str
    authority: str
    writer: str
    seq: int

    @property
    def is_set(self) -> bool:
        return self.kind == SET_EVENT

    @property
    def flag_label(self) -> Any:
        return _flag_label(self.flag) if self.flag else ""

    @property
    def previous_label(self) -> Any:
        return _flag_label(self.previous) if self.previous else ""


def _change(event: LedgerEvent) -> FlagChange:
    payload = event.payload
    return FlagChange(
        kind=event.kind,
        flag=str(payload.get("flag", "")) if event.kind == SET_EVENT else "",
        previous=str(payload.get("previous", "")),
        reason=str(payload.get("reason", "")),
        at=event.occurred_at,
        by=str(payload.get("by", "")),
        authority=str((payload.get("authority") or {}).get("name", "")),
        writer=event.writer,
        seq=event.seq,
    )


def flag_history(invoice: Invoice) -> list[FlagChange]:
    """Every flag set and cleared on the invoice, oldest first."""
    events = LedgerEvent.objects.filter(stream=invoice.stream, kind__in=EVENTS).order_by(
        "occurred_at", "seq"
    )
    return [_change(event) for event in events]


# --- Events received from the hub ------------------------------------------------------------


def state_after(event: LedgerEvent | None) -> tuple[str, datetime | None]:
    """(flag, flagged_at) after an authority event; no event means no flag."""
    if event is None or event.kind == CLEARED_EVENT:
        return AuthorityFlag.NONE, None
    flag = str(event.payload["flag"])
    if flag not in FLAGS:
        raise ValueError(f"unknown authority flag {flag!r}")
    return flag, datetime.fromisoformat(str(event.payload["flagged_at"]))


def apply_received_flag(invoice: Invoice, writer: str) -> bool:
    """Set the invoice's flag to what the writer's last authority event of its stream says.

    Runs in the consumer's transaction after the event was stored in the ledger; True if the
    row changed (an event applied twice, or an older one again, changes nothing).
    """
    invoice = _lock(invoice)
    last = (
        LedgerEvent.objects.filter(stream=invoice.stream, writer=writer, kind__in=EVENTS)
        .order_by("-seq")
        .first()
    )
    flag, flagged_at = state_after(last)
    if (invoice.authority_flag, invoice.flagged_at) == (flag, flagged_at):
        return False
    previous = invoice.authority_flag
    invoice.authority_flag, invoice.flagged_at = flag, flagged_at
    invoice.save(update_fields=["authority_flag", "flagged_at", "updated_at"])
    details = {"number": invoice.number, "flag": flag, "previous": previous, "writer": writer}
    record_audit(Actor(), "invoice.authority_flag_received", invoice.stream, None, details)
    return True
