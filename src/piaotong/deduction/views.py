"""Web UI of received invoices (进项) and deduction (勾选抵扣): the received list with filters and
bulk selection, an invoice's buyer-side page (book, select, revoke), and the period page
(statistics, confirmation).

Views build the actor, ask an access helper, call one action, and redirect with a message.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.deduction import actions
from piaotong.deduction.access import (
    buyers_for_actor,
    get_buyer_for_actor,
    get_received_invoice_for_actor,
    received_invoices,
)
from piaotong.deduction.actions import SelectionErrors, SelectionItem
from piaotong.deduction.choices import PeriodStatus
from piaotong.deduction.forms import BulkSelectForm, ReceivedFilterForm, SelectForm, current_period
from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import parse_period
from piaotong.deduction.queries import buyer_usage, filter_received, is_changed, with_buyer_state
from piaotong.deduction.web import actor_of as _actor
from piaotong.deduction.web import is_partial, safe_next, show_refusal
from piaotong.invoices.models import Invoice
from piaotong.invoices.views import login_required
from piaotong.lib.errors import RuleViolation, RuleViolations

PAGE_SIZE = 50


def _org_param(request: HttpRequest) -> str | None:
    return request.GET.get("org") or request.POST.get("org") or None


def _show_item_errors(request: HttpRequest, error: SelectionErrors, numbers: list[str]) -> None:
    for index, violations in sorted(error.items.items()):
        label = numbers[index] if index < len(numbers) else str(index + 1)
        for violation in violations:
            messages.error(request, f"{label}: {violation.text()}")


# --- Received list -------------------------------------------------------------------------------


@login_required
@require_GET
def received_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    buyer = get_buyer_for_actor(actor, _org_param(request))
    filters = ReceivedFilterForm(request.GET)
    invoices = with_buyer_state(
        filter_received(received_invoices(actor, [buyer.pk]), **filters.filters())
    ).order_by("-issue_date", "-id")
    page = Paginator(invoices, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "buyer": buyer,
        "buyers": buyers_for_actor(actor),
        "filters": filters,
        "page": page,
        "may_select": actor.can(Action.SELECT_DEDUCTION, buyer.pk),
        "bulk_form": BulkSelectForm(initial={"period": current_period()}),
    }
    partial = is_partial(request)
    template = "deduction/_received_table.html" if partial else "deduction/received_list.html"
    response = render(request, template, context)
    if partial:
        query = urlencode([(key, request.GET[key]) for key in request.GET if request.GET[key]])
        response["HX-Push-Url"] = f"{request.path}?{query}" if query else request.path
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def bulk_select(request: HttpRequest) -> HttpResponse:
    """Select the checked invoices for deduction in one period, all or nothing."""
    actor = _actor(request)
    buyer = get_buyer_for_actor(actor, _org_param(request), Action.SELECT_DEDUCTION)
    form = BulkSelectForm(request.POST)
    back = _next(request, reverse("deduction:received") + f"?org={buyer.pk}")
    uids = [value for value in request.POST.getlist("invoice") if _is_uuid(value)]
    if not form.is_valid() or not uids:
        messages.error(request, _("Tick at least one invoice and give the period as YYYYMM."))
        return redirect(back)
    invoices = list(received_invoices(actor, [buyer.pk]).filter(uid__in=uids).order_by("number"))
    try:
        selections = actions.do_select_for_deduction(
            actor, buyer, form.cleaned_data["period"], [SelectionItem(i) for i in invoices]
        )
    except SelectionErrors as error:
        _show_item_errors(request, error, [i.number or "" for i in invoices])
        messages.error(request, _("Nothing was selected; fix the invoices above and try again."))
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(
            request,
            _("%(count)s invoices selected in period %(period)s.")
            % {"count": len(selections), "period": form.cleaned_data["period"]},
        )
    return redirect(back)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _next(request: HttpRequest, fallback: str) -> str:
    return safe_next(request, fallback)


# --- One received invoice ------------------------------------------------------------------------


def _detail_url(invoice: Invoice) -> str:
    return reverse("deduction:detail", kwargs={"uid": invoice.uid})


@login_required
@require_GET
def received_detail(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invoice = get_received_invoice_for_actor(actor, uid)
    buyer_id = invoice.buyer_id
    assert buyer_id is not None
    selections = list(
        DeductionSelection.objects.filter(invoice=invoice)
        .select_related("deduction_period")
        .order_by("-selected_at", "-id")
    )
    active = next((s for s in selections if s.is_active), None)
    context = {
        "invoice": invoice,
        "booking": Booking.objects.filter(invoice=invoice).first(),
        "selections": selections,
        "active": active,
        "usage": buyer_usage(invoice),
        "changed": is_changed(invoice),
        "may_book": actor.can(Action.BOOK_INVOICE, buyer_id),
        "may_select": actor.can(Action.SELECT_DEDUCTION, buyer_id),
        "select_form": SelectForm(initial={"period": current_period(), "deduct": "1"}),
    }
    return render(request, "deduction/received_detail.html", context)


def _guarded(request: HttpRequest, invoice: Invoice, call: Any, success: str) -> HttpResponse:
    try:
        call()
    except SelectionErrors as error:
        _show_item_errors(request, error, [invoice.number or ""])
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, success)
    return redirect(_next(request, _detail_url(invoice)))


@login_required
@require_POST
def book(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invoice = get_received_invoice_for_actor(actor, uid)
    return _guarded(
        request,
        invoice,
        lambda: actions.do_book_invoice(actor, invoice),
        _("Invoice %(number)s booked.") % {"number": invoice.number},
    )


@login_required
@require_POST
def select(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invoice = get_received_invoice_for_actor(actor, uid)
    form = SelectForm(request.POST)
    if not form.is_valid():
        for field_errors in form.errors.values():
            for message in field_errors:
                messages.error(request, str(message))
        return redirect(_detail_url(invoice))
    data = form.cleaned_data
    item = SelectionItem(invoice, data["deduct"], data["effective_tax"], data["reason"] or "")
    buyer = invoice.buyer
    assert buyer is not None  # a received invoice has a buyer
    return _guarded(
        request,
        invoice,
        lambda: actions.do_select_for_deduction(actor, buyer, data["period"], [item]),
        _("Invoice %(number)s selected in period %(period)s.")
        % {"number": invoice.number, "period": data["period"]},
    )


@login_required
@require_POST
def revoke(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invoice = get_received_invoice_for_actor(actor, uid)
    return _guarded(
        request,
        invoice,
        lambda: actions.do_revoke_selection(actor, invoice),
        _("The selection of %(number)s was revoked.") % {"number": invoice.number},
    )


# --- Periods ---------------------------------------------------------------------------------------


@login_required
@require_GET
def periods(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    buyer = get_buyer_for_actor(actor, _org_param(request))
    rows = (
        DeductionPeriod.objects.filter(buyer=buyer)
        .annotate(active=Count("selections", filter=Q(selections__revoked_at=None)))
        .order_by("-period")
    )
    context = {
        "buyer": buyer,
        "buyers": buyers_for_actor(actor),
        "periods": rows,
        "current": current_period(),
    }
    return render(request, "deduction/periods.html", context)


def _period_or_404(text: str) -> str:
    try:
        return parse_period(text)
    except RuleViolation:
        raise Http404("No such period") from None


@login_required
@require_GET
def period_detail(request: HttpRequest, period: str) -> HttpResponse:
    actor = _actor(request)
    buyer = get_buyer_for_actor(actor, _org_param(request))
    period = _period_or_404(period)
    period_row = DeductionPeriod.objects.filter(buyer=buyer, period=period).first()
    status = PeriodStatus(period_row.status) if period_row else PeriodStatus.OPEN
    # An open period shows its live totals; a counted or confirmed one its frozen snapshot.
    statistics = None
    if period_row is not None:
        statistics = (
            actions.current_statistics(period_row) if period_row.is_open else period_row.statistics
        )
    selections = (
        DeductionSelection.objects.filter(deduction_period=period_row, revoked_at=None)
        .select_related("invoice")
        .order_by("invoice__issue_date", "invoice__number")
        if period_row
        else DeductionSelection.objects.none()
    )
    context = {
        "buyer": buyer,
        "period": period,
        "period_row": period_row,
        "status": status,
        "statistics": statistics,
        "page": Paginator(selections, PAGE_SIZE).get_page(request.GET.get("page")),
        "may_select": actor.can(Action.SELECT_DEDUCTION, buyer.pk),
        "may_confirm": actor.can(Action.CONFIRM_DEDUCTION, buyer.pk),
    }
    return render(request, "deduction/period_detail.html", context)


PERIOD_VERBS: dict[str, tuple[Any, Any]] = {
    "statistics": (
        actions.do_apply_statistics,
        gettext_lazy("Statistics applied for period %(period)s."),
    ),
    "revoke-statistics": (
        actions.do_revoke_statistics,
        gettext_lazy("Statistics revoked: period %(period)s is open for selection again."),
    ),
    "confirm": (actions.do_confirm_deduction, gettext_lazy("Period %(period)s confirmed.")),
}


@login_required
@require_POST
def period_action(request: HttpRequest, period: str, verb: str) -> HttpResponse:
    if verb not in PERIOD_VERBS:
        raise Http404("No such step")
    actor = _actor(request)
    needed = Action.CONFIRM_DEDUCTION if verb == "confirm" else Action.SELECT_DEDUCTION
    buyer = get_buyer_for_actor(actor, _org_param(request), needed)
    period = _period_or_404(period)
    action, message = PERIOD_VERBS[verb]
    back = reverse("deduction:period", kwargs={"period": period}) + f"?org={buyer.pk}"
    try:
        action(actor, buyer, period)
    except SelectionErrors as error:
        numbers = _period_numbers(buyer, period)
        _show_item_errors(request, error, numbers)
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, str(message) % {"period": period})
    return redirect(back)


def _period_numbers(buyer: Organisation, period: str) -> list[str]:
    """Invoice numbers of a period's active selections, in the order confirmation checks them."""
    return [
        number or ""
        for number in DeductionSelection.objects.filter(
            deduction_period__buyer=buyer, deduction_period__period=period, revoked_at=None
        )
        .order_by("invoice_id")
        .values_list("invoice__number", flat=True)
    ]
