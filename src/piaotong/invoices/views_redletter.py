"""Web UI of red-letter (红字) and voiding (作废): filing a request from an invoice, the list of
incoming and outgoing requests with the time left to answer, answering, withdrawing, voiding.

Each view builds the actor, asks an access helper, calls one action from `invoices.redletter`
and redirects with a message (POST, redirect, GET); plain HTML forms, no JavaScript needed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from piaotong.accounts.access import Actor
from piaotong.accounts.permissions import Action
from piaotong.invoices import redletter
from piaotong.invoices.access import (
    get_confirmation_for_actor,
    get_invoice_for_actor,
    visible_confirmations,
)
from piaotong.invoices.choices import (
    InvoiceStatus,
    RedLetterReason,
    RedLetterSide,
    RedLetterStatus,
)
from piaotong.invoices.forms import violations_of
from piaotong.invoices.models import Invoice, RedLetterConfirmation
from piaotong.invoices.redletter_rules import RedLineRequest
from piaotong.invoices.views import _actor, _show_refusal, invoice_url, login_required
from piaotong.lib.errors import RuleViolation, RuleViolations

FULL, PARTIAL = "full", "partial"


class RedLetterForm(forms.Form):
    """A 红字发票信息确认单 as a party files it; partial amounts are one field per blue line."""

    side = forms.ChoiceField(label=gettext_lazy("Filed as"), choices=RedLetterSide.choices)
    reason = forms.ChoiceField(label=gettext_lazy("Reason"), choices=RedLetterReason.choices)
    scope = forms.ChoiceField(
        label=gettext_lazy("Scope"),
        choices=[
            (FULL, gettext_lazy("Full reversal (全额红冲)")),
            (PARTIAL, gettext_lazy("Partial reversal (部分红冲)")),
        ],
        widget=forms.RadioSelect,
        initial=FULL,
    )

    def __init__(
        self, *args: object, sides: list[RedLetterSide], positions: list[int], **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        side_field = self.fields["side"]
        assert isinstance(side_field, forms.ChoiceField)
        side_field.choices = [(side.value, side.label) for side in sides]
        self.positions = positions
        for position in positions:
            label = gettext_lazy("Amount to reverse, line %(position)s") % {"position": position}
            self.fields[f"line_{position}"] = forms.DecimalField(
                label=label,
                required=False,
                min_value=0,
                decimal_places=2,
                max_digits=16,
                widget=forms.NumberInput(attrs={"aria-label": label, "step": "0.01"}),
            )

    def to_input(self) -> tuple[str, redletter.RedLetterInput]:
        data = self.cleaned_data
        full = data["scope"] == FULL
        lines = [
            RedLineRequest(position, data[f"line_{position}"])
            for position in self.positions
            if not full and data.get(f"line_{position}")
        ]
        return data["side"], redletter.RedLetterInput(data["reason"], full, lines)


class VoidForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason for voiding"), max_length=500)


class RefuseForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason for refusing"), max_length=500)


# --- Filing ----------------------------------------------------------------------------------


def _sides_or_403(actor: Actor, invoice: Invoice) -> list[RedLetterSide]:
    sides = redletter.sides_for(actor, invoice)
    if not sides:
        raise PermissionDenied(_("You may not file a red-letter request for this invoice."))
    return sides


@login_required
@require_http_methods(["GET", "POST"])
def new_request(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invoice = get_invoice_for_actor(actor, str(uid))
    sides = _sides_or_403(actor, invoice)
    lines = list(invoice.lines.all())
    remaining = {line.position: line for line in redletter.blue_lines(invoice)}
    form = RedLetterForm(
        request.POST if request.method == "POST" else None,
        sides=sides,
        positions=[line.position for line in lines],
    )
    errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        side, data = form.to_input()
        try:
            confirmation = redletter.do_request_red_letter(actor, invoice, side, data)
        except (RuleViolation, RuleViolations) as error:
            errors = [violation.text() for violation in violations_of(error)]
        else:
            messages.success(request, _request_message(confirmation))
            return redirect("invoices:red_letter_detail", uid=confirmation.uid)
    rows = [(line, remaining.get(line.position), form[f"line_{line.position}"]) for line in lines]
    context = {"invoice": invoice, "form": form, "rows": rows, "errors": errors}
    return render(request, "invoices/redletter/new.html", context)


def _request_message(confirmation: RedLetterConfirmation) -> str:
    if confirmation.status == RedLetterStatus.ISSUED:
        return _("No confirmation was needed: red-letter invoice %(number)s issued.") % {
            "number": confirmation.red_number
        }
    return _("Red-letter request filed; the other party has 72 hours to answer.")


# --- Lists and detail ------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRow:
    """One confirmation as the actor sees it: from which side, and what they may do with it."""

    confirmation: RedLetterConfirmation
    outgoing: bool
    may_answer: bool
    may_withdraw: bool

    @property
    def time_left(self) -> timedelta | None:
        if self.confirmation.status != RedLetterStatus.PENDING:
            return None
        return max(self.confirmation.expires_at - timezone.now(), timedelta(0))

    @property
    def hours_left(self) -> int | None:
        left = self.time_left
        return None if left is None else int(left.total_seconds() // 3600)

    @property
    def minutes_left(self) -> int | None:
        left = self.time_left
        return None if left is None else int(left.total_seconds() % 3600 // 60)


def _row(actor: Actor, confirmation: RedLetterConfirmation) -> RequestRow:
    blue = confirmation.blue_invoice
    initiator = redletter.party(blue, confirmation.initiator_side)
    counterparty = redletter.party(blue, confirmation.counterparty_side)
    pending = confirmation.status == RedLetterStatus.PENDING

    def may(organisation: object, side: str) -> bool:
        return (
            pending
            and organisation is not None
            and actor.can(Action.REQUEST_RED_LETTER, organisation.pk)  # type: ignore[attr-defined]
            and redletter.is_local_side(blue, side)
        )

    outgoing = initiator is not None and initiator.pk in actor.organisation_ids()
    return RequestRow(
        confirmation,
        outgoing=outgoing,
        may_answer=may(counterparty, confirmation.counterparty_side),
        may_withdraw=may(initiator, confirmation.initiator_side),
    )


@login_required
@require_GET
def request_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    confirmations = visible_confirmations(actor).select_related(
        "blue_invoice__seller", "blue_invoice__buyer"
    )[:200]
    rows = [_row(actor, confirmation) for confirmation in confirmations]
    context = {
        "incoming": [row for row in rows if not row.outgoing],
        "outgoing": [row for row in rows if row.outgoing],
        "refuse_form": RefuseForm(),
    }
    return render(request, "invoices/redletter/list.html", context)


@login_required
@require_GET
def request_detail(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    confirmation = get_confirmation_for_actor(actor, str(uid))
    positions = {line.position: line for line in confirmation.blue_invoice.lines.all()}
    lines = [
        (positions.get(int(item["position"])), item["amount"], item["tax"])
        for item in confirmation.lines
    ]
    context = {
        "row": _row(actor, confirmation),
        "confirmation": confirmation,
        "lines": lines,
        "refuse_form": RefuseForm(),
    }
    return render(request, "invoices/redletter/detail.html", context)


# --- Answers ---------------------------------------------------------------------------------


def _answer(request: HttpRequest, uid: uuid.UUID, verb: str) -> HttpResponse:
    actor = _actor(request)
    confirmation = get_confirmation_for_actor(actor, str(uid))
    try:
        if verb == "confirm":
            confirmation = redletter.do_confirm_red_letter(actor, confirmation)
            if confirmation.red_number:
                messages.success(
                    request,
                    _("Confirmed: red-letter invoice %(number)s issued.")
                    % {"number": confirmation.red_number},
                )
            else:
                messages.success(request, _("Confirmed; the seller's node issues the red invoice."))
        elif verb == "refuse":
            redletter.do_refuse_red_letter(actor, confirmation, request.POST.get("reason", ""))
            messages.success(request, _("Request refused."))
        else:
            redletter.do_withdraw_red_letter(actor, confirmation)
            messages.success(request, _("Request withdrawn."))
    except (RuleViolation, RuleViolations) as error:
        _show_refusal(request, error)
    return redirect("invoices:red_letter_detail", uid=confirmation.uid)


@login_required
@require_POST
def confirm(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    return _answer(request, uid, "confirm")


@login_required
@require_POST
def refuse(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    return _answer(request, uid, "refuse")


@login_required
@require_POST
def withdraw(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    return _answer(request, uid, "withdraw")


# --- Voiding ---------------------------------------------------------------------------------


@login_required
@require_POST
def void(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invoice = get_invoice_for_actor(actor, str(uid))
    try:
        redletter.do_void_invoice(actor, invoice, request.POST.get("reason", ""))
    except (RuleViolation, RuleViolations) as error:
        _show_refusal(request, error)
    else:
        messages.success(request, _("Invoice %(number)s voided.") % {"number": invoice.number})
    return redirect(invoice_url(invoice))


def detail_context(actor: Actor, invoice: Invoice) -> dict[str, object]:
    """What the invoice detail page shows about red-letter and voiding."""
    issued_blue = invoice.number is not None and not invoice.is_red
    confirmations = list(
        invoice.red_letter_confirmations.select_related("red_invoice").order_by("-created_at")
    )
    return {
        "may_red_letter": issued_blue
        and invoice.can_transition_to(InvoiceStatus.PARTIALLY_RED_FLUSHED)
        and bool(redletter.sides_for(actor, invoice)),
        "may_void": issued_blue
        and invoice.can_be_voided()
        and actor.can(Action.VOID_INVOICE, invoice.seller_id),
        "void_form": VoidForm(),
        "confirmations": confirmations,
        "red_invoices": list(invoice.red_invoices.order_by("issued_at")) if issued_blue else [],
        "red_letter_list_url": reverse("invoices:red_letters"),
    }
