"""The trace page (为什么找不到这张发票): what the user has of an invoice in, the verdict out."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from piaotong.accounts.access import actor_for_request
from piaotong.exchange.trace_facts import require_tracer, trace_request
from piaotong.exchange.trace_remote import ask_nodes

MAX_PICTURE_BYTES = 20 * 1024 * 1024


class TraceForm(forms.Form):
    text = forms.CharField(
        label=_("Invoice number, code and number, or QR code text"),
        required=False,
        max_length=512,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    invoice_code = forms.CharField(
        label=_("Invoice code (发票代码, legacy invoices only)"), required=False, max_length=12
    )
    issue_date = forms.CharField(label=_("Issue date (optional)"), required=False, max_length=20)
    amount = forms.CharField(
        label=_("Amount as you typed it when checking (optional)"), required=False, max_length=30
    )
    picture = forms.FileField(
        label=_("Or a picture of the QR code, or the invoice file"), required=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        picture = data.get("picture")
        if picture is not None and picture.size > MAX_PICTURE_BYTES:
            self.add_error("picture", _("The file is larger than 20 MB."))
        if not (data.get("text") or "").strip() and picture is None:
            raise forms.ValidationError(
                _("Give the invoice number, the code and number, the QR text or a picture.")
            )
        return data


def _ticket_url() -> str:
    try:
        return reverse("support:open")
    except NoReverseMatch:  # the support app is not installed on this node
        return ""


@login_required
@require_http_methods(["GET", "POST"])
def trace_page(request: HttpRequest) -> HttpResponse:
    actor = require_tracer(actor_for_request(request))
    form = TraceForm(request.POST or None, request.FILES or None)
    result, traced = None, ""
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        picture = data.get("picture")
        result, traced = trace_request(
            actor,
            text=data["text"],
            invoice_code=data["invoice_code"],
            issue_date=data["issue_date"],
            amount=data["amount"],
            upload=(picture.read(), picture.name) if picture is not None else None,
            asker=ask_nodes,
        )
    return render(
        request,
        "exchange/trace.html",
        {
            "form": form,
            "result": result,
            "traced": traced,
            "ticket_url": _ticket_url(),
            "data": form.cleaned_data if form.is_bound and form.is_valid() else {},
        },
    )
