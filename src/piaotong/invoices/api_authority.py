"""Authority flag (失控 / 异常) endpoints under /api/v1/invoices.

POST /{ref}/authority-flag           set (or change) the flag, with a reason (tax officer, hub)
POST /{ref}/authority-flag/clear     clear the flag, with a reason (tax officer, hub)
GET  /{ref}/authority-flag           the current flag and its history (whoever sees the invoice)
GET  /authority/flags                flagged invoices of the officer's regions, with filters

Every POST takes an `Idempotency-Key`; a retry replays the first answer. Only a logged-in tax
officer of a tax bureau acts (a session): API keys belong to taxpayers and never flag (403).
"""

from typing import Any, Literal

from django.core.paginator import Paginator
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from ninja import Field, Router, Schema
from pydantic import ConfigDict

from piaotong.accounts.access import Actor
from piaotong.api.idempotency import idempotent, json_response
from piaotong.invoices import authority
from piaotong.invoices.access import get_invoice_for_actor
from piaotong.invoices.choices import AuthorityFlag
from piaotong.invoices.models import Invoice
from piaotong.invoices.schemas import invoice_summary

router = Router(tags=["authority flags"])
ERRORS: dict[int, Any] = {400: dict, 403: dict, 404: dict, 409: dict, 422: dict}


class FlagIn(Schema):
    model_config = ConfigDict(extra="forbid")

    flag: Literal["out_of_control", "abnormal"] = Field(description="失控 or 异常")
    reason: str = Field(max_length=authority.REASON_MAX)


class ClearIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=authority.REASON_MAX)


def _actor(request: HttpRequest) -> Actor:
    return request.auth  # type: ignore[attr-defined,no-any-return]


def flag_out(invoice: Invoice, *, history: bool = True) -> dict[str, Any]:
    zh, en = invoice.status_mark if invoice.number else ("", "")
    out = invoice_summary(invoice) | {
        "seller_region": invoice.seller.region,
        "authority_flag": invoice.authority_flag or None,
        "flagged_at": invoice.flagged_at.isoformat() if invoice.flagged_at else None,
        "status_mark": {"zh": zh, "en": en},
    }
    if history:
        out["history"] = [
            {
                "event": change.kind,
                "flag": change.flag or None,
                "previous": change.previous or None,
                "reason": change.reason,
                "at": change.at.isoformat(),
                "by": change.by,
                "authority": change.authority,
                "writer": change.writer,
            }
            for change in authority.flag_history(invoice)
        ]
    return out


def _flaggable(request: HttpRequest, ref: str) -> Invoice:
    scope = authority.require_flag_scope(_actor(request))
    return authority.get_flaggable_invoice(scope, ref)


def _answer(invoice: Invoice) -> HttpResponse:
    fresh = Invoice.objects.select_related("seller").get(pk=invoice.pk)
    return json_response(200, flag_out(fresh))


@router.post(
    "/{ref}/authority-flag",
    response={200: dict, **ERRORS},
    summary="Flag an issued invoice 失控 or 异常 (tax officer, at the hub)",
)
@idempotent
def set_flag(request: HttpRequest, ref: str, payload: FlagIn) -> HttpResponse:
    invoice = _flaggable(request, ref)
    authority.do_set_authority_flag(_actor(request), invoice, payload.flag, payload.reason)
    return _answer(invoice)


@router.post(
    "/{ref}/authority-flag/clear",
    response={200: dict, **ERRORS},
    summary="Clear an invoice's authority flag (tax officer, at the hub)",
)
@idempotent
def clear_flag(request: HttpRequest, ref: str, payload: ClearIn) -> HttpResponse:
    invoice = _flaggable(request, ref)
    authority.do_clear_authority_flag(_actor(request), invoice, payload.reason)
    return _answer(invoice)


@router.get(
    "/{ref}/authority-flag",
    response={200: dict, 404: dict},
    summary="An invoice's authority flag and its history",
)
def get_flag(request: HttpRequest, ref: str) -> HttpResponse:
    actor = _actor(request)
    scope = authority.flag_scope(actor)
    invoice: Invoice | None = None
    if scope:
        try:
            invoice = authority.get_flaggable_invoice(scope, ref)
        except Http404:
            invoice = None
    return _answer(invoice or get_invoice_for_actor(actor, ref))


@router.get(
    "/authority/flags",
    response={200: dict, 403: dict},
    summary="Flagged invoices of the tax officer's regions, most recently flagged first",
)
def list_flags(
    request: HttpRequest,
    flag: Literal["out_of_control", "abnormal"] | None = None,
    region: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> HttpResponse:
    scope = authority.require_flag_scope(_actor(request))
    rows = authority.flaggable_invoices(scope).exclude(authority_flag=AuthorityFlag.NONE)
    if flag:
        rows = rows.filter(authority_flag=flag)
    if region:
        rows = rows.filter(seller__region=region)
    rows = rows.select_related("seller").order_by(F("flagged_at").desc(nulls_last=True), "-id")
    page_size = min(max(page_size, 1), 500)
    current = Paginator(rows, page_size).get_page(page)
    return json_response(
        200,
        {
            "count": current.paginator.count,
            "page": current.number,
            "page_size": page_size,
            "results": [flag_out(invoice, history=False) for invoice in current],
        },
    )
