"""Downloads of invoice documents and a print-ready page, for parties of the invoice only."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from piaotong.accounts.access import Actor, actor_for_request
from piaotong.documents import storage
from piaotong.documents.actions import get_document, signed_invoice
from piaotong.documents.choices import CONTENT_TYPES, DocumentFormat
from piaotong.documents.invoice_xml import capitals
from piaotong.documents.layout import COLUMNS
from piaotong.invoices.access import get_invoice_for_actor
from piaotong.invoices.models import Invoice
from piaotong.lib.errors import RuleViolation
from piaotong.lib.money import RATES


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    if actor is None:
        raise Http404("No such invoice")
    return actor


def document_response(invoice: Invoice, fmt: str) -> HttpResponse:
    """The stored file as an attachment named after the invoice number."""
    document = get_document(invoice, fmt)
    response = HttpResponse(storage.read_bytes(document), content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{invoice.number}.{fmt}"'
    response["X-Content-SHA256"] = document.sha256
    response["Cache-Control"] = "private, no-store"
    return response


@require_GET
@login_required
def download(request: HttpRequest, number: str, fmt: str) -> HttpResponse:
    invoice = get_invoice_for_actor(_actor(request), number)
    if fmt not in DocumentFormat.values or not invoice.number:
        raise Http404("No such document")
    try:
        return document_response(invoice, fmt)
    except RuleViolation as violation:
        return render(
            request,
            "documents/unavailable.html",
            {"invoice": invoice, "reason": violation.text()},
            status=409,
        )
    except Exception:
        reason = _(
            "Rendering the document failed; the failure was recorded. Try again in a minute."
        )
        return render(
            request,
            "documents/unavailable.html",
            {"invoice": invoice, "reason": reason},
            status=503,
        )


@require_GET
@login_required
def print_view(request: HttpRequest, number: str) -> HttpResponse:
    """The invoice as a print-ready HTML page (A5 landscape, like the PDF)."""
    invoice = get_invoice_for_actor(_actor(request), number)
    if not invoice.number:
        raise Http404("No such document")
    signed = signed_invoice(invoice)
    lines = [
        {
            **line,
            "rate_label": RATES[line["tax_rate"]].label_zh
            if line["tax_rate"] in RATES
            else line["tax_rate"],
        }
        for line in signed.payload["lines"]
    ]
    context = {
        "invoice": invoice,
        "signed": signed,
        "p": signed.payload,
        "lines": lines,
        "columns": [title for title, _width, _align in COLUMNS],
        "capitals": capitals(signed.payload["total_with_tax"]),
    }
    return render(request, "documents/print.html", context)
