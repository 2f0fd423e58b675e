"""Endpoints under /api/v1/documents: an issued invoice's PDF, XML or OFD, for its parties."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import Router

from piaotong.accounts.access import Actor
from piaotong.documents.choices import DocumentFormat
from piaotong.documents.views import document_response
from piaotong.invoices.access import get_invoice_for_actor

router = Router(tags=["documents"])
ERRORS: dict[int, Any] = {403: dict, 404: dict, 409: dict, 422: dict}


def _actor(request: HttpRequest) -> Actor:
    return request.auth  # type: ignore[attr-defined,no-any-return]


@router.get(
    "/{number}/{fmt}",
    response={200: None, **ERRORS},
    summary="Download an invoice document (PDF, XML or OFD)",
)
def download(request: HttpRequest, number: str, fmt: str) -> HttpResponse:
    """The document file; 404 for invoices the caller is not a party of, or unknown formats."""
    invoice = get_invoice_for_actor(_actor(request), number)
    if fmt not in DocumentFormat.values or not invoice.number:
        raise Http404("No such document")
    return document_response(invoice, fmt)
