"""Actions of the VAT return (增值税申报): prepare a draft, submit it, amend a submitted return.

A return is the taxpayer's own fact, written on its home node. Each action checks permission
and input, then writes in one transaction with an audit entry. Submission freezes the version's
numbers (with a hash) and locks the deduction period(s) it covers; issuing goes on untouched:
later changes to the period's invoices show up as a difference and call for an amendment.

Lock order: the return versions of the (organisation, period) -> deduction period rows ->
audit chain head.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.deduction.actions import do_close_period_for_return, require_buyer_node
from piaotong.filing.aggregate import gather_facts
from piaotong.filing.choices import ReturnStatus
from piaotong.filing.compute import SMALL_SCALE, compute_return
from piaotong.filing.models import VatReturn
from piaotong.filing.periods import TaxPeriod, parse_tax_period
from piaotong.ledger.actions import record_audit
from piaotong.lib.canonical import canonical_json, sha256_hex
from piaotong.lib.errors import RuleViolation


def _require(actor: Actor, action: Action, organisation: Organisation) -> None:
    if not actor.can(action, organisation.pk):
        raise PermissionDenied(f"{actor.label} may not {action} for {organisation.name}")


def check_period(organisation: Organisation, text: str) -> TaxPeriod:
    """The period, if this taxpayer files for such periods: quarters only for small-scale."""
    period = parse_tax_period(text)
    if period.is_quarter and organisation.taxpayer_kind != SMALL_SCALE:
        raise RuleViolation(
            "period",
            "quarter_not_allowed",
            _("%(name)s is a general taxpayer and files monthly: give a month such as %(month)s."),
            {"name": organisation.name, "month": period.month_codes[-1]},
        )
    return period


def compute_numbers(organisation: Organisation, period: TaxPeriod) -> dict[str, Any]:
    """What a version stores: the result and the groups it was computed from."""
    facts = gather_facts(organisation, period)
    result = compute_return(facts)
    return result.as_json() | {
        "output": [
            {
                "special": g.special,
                "rate": g.rate,
                "amount": str(g.amount),
                "tax": str(g.tax),
                "lines": g.lines,
            }
            for g in facts.output
        ],
        "input": [
            {
                "kind": g.kind,
                "invoices": g.invoices,
                "amount": str(g.amount),
                "face_tax": str(g.face_tax),
                "effective_tax": str(g.effective_tax),
            }
            for g in facts.input
        ],
    }


def _versions(organisation: Organisation, period: TaxPeriod) -> list[VatReturn]:
    """All versions, locked, newest first."""
    return list(
        VatReturn.objects.select_for_update()
        .filter(organisation=organisation, period=period.code)
        .order_by("-version")
    )


def _fill(vat_return: VatReturn, numbers: dict[str, Any], actor: Actor) -> None:
    lines = numbers["lines"]
    vat_return.numbers = numbers
    vat_return.taxpayer_kind = numbers["taxpayer_kind"]
    vat_return.payable = Decimal(lines["payable"])
    vat_return.credit_carried_forward = Decimal(lines.get("credit_carried_forward", "0.00"))
    vat_return.prepared_at, vat_return.prepared_by_label = timezone.now(), actor.label


def do_prepare_return(actor: Actor, organisation: Organisation, period: str) -> VatReturn:
    """Compute the return and save it as the period's draft (new, or refreshed)."""
    _require(actor, Action.PREPARE_RETURN, organisation)
    require_buyer_node(organisation)
    tax_period = check_period(organisation, period)
    with transaction.atomic():
        versions = _versions(organisation, tax_period)
        if versions and not versions[0].is_draft:
            raise RuleViolation(
                "period",
                "already_submitted",
                _(
                    "The return for %(period)s was submitted (version %(version)s): start an "
                    "amendment (更正申报) to change it."
                ),
                {"period": tax_period.code, "version": versions[0].version},
            )
        draft = (
            versions[0]
            if versions
            else VatReturn(organisation=organisation, period=tax_period.code, version=1)
        )
        _fill(draft, compute_numbers(organisation, tax_period), actor)
        draft.save()
        record_audit(
            actor,
            "return.prepared",
            draft.target,
            organisation.pk,
            {"version": draft.version, "payable": draft.payable},
        )
    return draft


def do_submit_return(actor: Actor, organisation: Organisation, period: str) -> VatReturn:
    """Submit the period's draft (申报): its numbers are frozen and the deduction period locked.

    The numbers are recomputed in the transaction; if the data changed since the draft was
    prepared, nothing is submitted and the user reviews the refreshed draft first.
    """
    _require(actor, Action.SUBMIT_RETURN, organisation)
    require_buyer_node(organisation)
    tax_period = check_period(organisation, period)
    if not tax_period.has_ended(timezone.localdate()):
        raise RuleViolation(
            "period",
            "period_not_ended",
            _("Period %(period)s has not ended yet; submit its return from %(start)s on."),
            {"period": tax_period.code, "start": tax_period.end.isoformat()},
        )
    with transaction.atomic():
        versions = _versions(organisation, tax_period)
        if not versions or not versions[0].is_draft:
            raise RuleViolation(
                "period",
                "no_draft",
                _("There is no draft return for %(period)s: prepare one, review it, then submit."),
                {"period": tax_period.code},
            )
        draft = versions[0]
        if organisation.taxpayer_kind != SMALL_SCALE:
            for month in tax_period.month_codes:
                do_close_period_for_return(actor, organisation, month)
        numbers = compute_numbers(organisation, tax_period)
        if numbers != draft.numbers:
            raise RuleViolation(
                "period",
                "numbers_changed",
                _(
                    "The invoices or deductions of %(period)s changed since the draft was "
                    "prepared: prepare the draft again, review it, then submit."
                ),
                {"period": tax_period.code},
            )
        for older in versions[1:]:
            if older.is_submitted:
                older.status = ReturnStatus.SUPERSEDED
                older.save(update_fields=["status"])
        draft.status = ReturnStatus.SUBMITTED
        draft.submitted_at, draft.submitted_by_label = timezone.now(), actor.label
        draft.content_hash = sha256_hex(canonical_json(draft.numbers))
        draft.save(update_fields=["status", "submitted_at", "submitted_by_label", "content_hash"])
        record_audit(
            actor,
            "return.submitted",
            draft.target,
            organisation.pk,
            {"version": draft.version, "payable": draft.payable, "hash": draft.content_hash},
        )
    return draft


def do_amend_return(
    actor: Actor, organisation: Organisation, period: str, reason: str
) -> VatReturn:
    """Start an amendment (更正申报): a new draft version, computed afresh; the submitted
    version stays in force until the amendment is submitted."""
    _require(actor, Action.PREPARE_RETURN, organisation)
    require_buyer_node(organisation)
    tax_period = check_period(organisation, period)
    if not reason.strip():
        raise RuleViolation(
            "reason", "required", _("Say why the return is amended; the reason is kept with it.")
        )
    with transaction.atomic():
        versions = _versions(organisation, tax_period)
        if not versions or not versions[0].is_submitted:
            raise RuleViolation(
                "period",
                "nothing_to_amend",
                _(
                    "Only a submitted return is amended; %(period)s has none, or its amendment is "
                    "already in draft."
                ),
                {"period": tax_period.code},
            )
        draft = VatReturn(
            organisation=organisation,
            period=tax_period.code,
            version=versions[0].version + 1,
            amendment_reason=reason.strip()[:500],
        )
        _fill(draft, compute_numbers(organisation, tax_period), actor)
        draft.save()
        record_audit(
            actor,
            "return.amendment_started",
            draft.target,
            organisation.pk,
            {"version": draft.version, "reason": draft.amendment_reason},
        )
    return draft


def do_record_return_export(actor: Actor, vat_return: VatReturn, fmt: str) -> None:
    """An export of a return is audited."""
    with transaction.atomic():
        record_audit(
            actor,
            "return.exported",
            vat_return.target,
            vat_return.organisation_id,
            {"version": vat_return.version, "format": fmt},
        )
