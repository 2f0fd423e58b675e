"""Web UI of authority flags (失控 / 异常): the tax officer's list of flagged invoices and the
flag page of one invoice, where the officer sets or clears a flag at the hub.

The flag page is also the seller's and the buyer's view of why their invoice is flagged: anyone
who may see the invoice reads its current flag and its history; only a tax officer whose bureau
covers the seller's region, on the hub, gets the forms. Plain HTML forms (POST, redirect, GET).
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from piaotong.accounts.access import Actor
from piaotong.invoices import authority
from piaotong.invoices.access import get_invoice_for_actor
from piaotong.invoices.authority import FlagScope
from piaotong.invoices.choices import AuthorityFlag
from piaotong.invoices.forms import violations_of
from piaotong.invoices.models import Invoice, InvoiceQuerySet
from piaotong.invoices.views import _actor, login_required
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.regions import REGIONS, is_provincial

FLAG_CHOICES = [
    (AuthorityFlag.OUT_OF_CONTROL.value, AuthorityFlag.OUT_OF_CONTROL.label),
    (AuthorityFlag.ABNORMAL.value, AuthorityFlag.ABNORMAL.label),
]
ANY_FLAG, ALL_INVOICES = "", "all"
PAGE_SIZE = 50


class SetFlagForm(forms.Form):
    flag = forms.ChoiceField(label=gettext_lazy("Flag"), choices=FLAG_CHOICES)
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=authority.REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class ClearFlagForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason for clearing"),
        max_length=authority.REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class FlagFilters(forms.Form):
    flag = forms.ChoiceField(
        label=gettext_lazy("Flag"),
        required=False,
        choices=[
            (ANY_FLAG, gettext_lazy("Flagged (any flag)")),
            *FLAG_CHOICES,
            (ALL_INVOICES, gettext_lazy("All issued invoices")),
        ],
    )
    region = forms.ChoiceField(label=gettext_lazy("Seller region"), required=False)
    number = forms.CharField(label=gettext_lazy("Invoice number"), required=False, max_length=20)

    def __init__(self, data: Any, *, scope: FlagScope) -> None:
        super().__init__(data)
        codes = sorted(REGIONS) if scope.is_national else sorted(scope.regions)
        region_field = self.fields["region"]
        assert isinstance(region_field, forms.ChoiceField)
        region_field.choices = [("", gettext_lazy("All regions"))] + [
            (code, f"{code} {REGIONS[code].name_zh}") for code in codes if is_provincial(code)
        ]

    def apply(self, invoices: InvoiceQuerySet) -> InvoiceQuerySet:
        """Flagged invoices by default; nothing for a filter the officer may not use."""
        if not self.is_bound:
            return invoices.exclude(authority_flag=AuthorityFlag.NONE)
        if not self.is_valid():
            return invoices.none()
        data = self.cleaned_data
        if data["flag"] == ANY_FLAG:
            invoices = invoices.exclude(authority_flag=AuthorityFlag.NONE)
        elif data["flag"] != ALL_INVOICES:
            invoices = invoices.filter(authority_flag=data["flag"])
        if data["region"]:
            invoices = invoices.filter(seller__region=data["region"])
        if data["number"].strip():
            invoices = invoices.filter(number__startswith=data["number"].strip())
        return invoices


@login_required
@require_GET
def flag_list(request: HttpRequest) -> HttpResponse:
    """Flagged invoices of the officer's regions, most recently flagged first."""
    scope = authority.require_flag_scope(_actor(request))
    filters = FlagFilters(request.GET or None, scope=scope)
    rows = filters.apply(authority.flaggable_invoices(scope)).order_by(
        F("flagged_at").desc(nulls_last=True), "-issue_date", "-id"
    )
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filters": filters, "page": page, "is_hub": authority.is_hub()}
    return render(request, "invoices/authority/list.html", context)


def _invoice(actor: Actor, scope: FlagScope, uid: uuid.UUID) -> Invoice:
    """The invoice as the officer's bureau sees it, else as a party or reader sees it (404)."""
    if scope:
        try:
            return authority.get_flaggable_invoice(scope, str(uid))
        except Http404:
            pass
    return get_invoice_for_actor(actor, str(uid))


def _add_errors(form: forms.Form, error: RuleViolation | RuleViolations) -> list[str]:
    """Put each violation beside its field; return those that belong to no field."""
    loose = []
    for violation in violations_of(error):
        if violation.field in form.fields:
            form.add_error(violation.field, violation.text())
        else:
            loose.append(violation.text())
    return loose


def _decide(actor: Actor, invoice: Invoice, data: dict[str, Any], *, clearing: bool) -> str:
    """Run the one action the form asks for; the message that says it was done."""
    if clearing:
        authority.do_clear_authority_flag(actor, invoice, data["reason"])
        return _("Flag cleared.")
    flagged = authority.do_set_authority_flag(actor, invoice, data["flag"], data["reason"])
    return _("Invoice %(number)s flagged %(flag)s.") % {
        "number": flagged.number,
        "flag": flagged.get_authority_flag_display(),
    }


@login_required
@require_http_methods(["GET", "POST"])
def invoice_flags(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    scope = authority.flag_scope(actor)
    invoice = _invoice(actor, scope, uid)
    may_flag = scope.covers(invoice.seller.region) and invoice.number is not None
    set_form: forms.Form = SetFlagForm()
    clear_form: forms.Form = ClearFlagForm()
    errors: list[str] = []
    if request.method == "POST":
        if not may_flag:
            raise PermissionDenied(_("Only a tax officer of the seller's region flags invoices."))
        clearing = request.POST.get("intent") == "clear"
        form = ClearFlagForm(request.POST) if clearing else SetFlagForm(request.POST)
        if clearing:
            clear_form = form
        else:
            set_form = form
        if form.is_valid():
            try:
                done = _decide(actor, invoice, form.cleaned_data, clearing=clearing)
            except (RuleViolation, RuleViolations) as error:
                errors = _add_errors(form, error)
            else:
                messages.success(request, done)
                return redirect("invoices:authority", uid=invoice.uid)
    context = {
        "invoice": invoice,
        "history": authority.flag_history(invoice),
        "may_flag": may_flag,
        "is_hub": authority.is_hub(),
        "set_form": set_form,
        "clear_form": clear_form,
        "errors": errors,
    }
    return render(request, "invoices/authority/invoice.html", context)
