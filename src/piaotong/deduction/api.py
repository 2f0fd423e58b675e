"""Endpoints under /api/v1/deduction: received invoices, booking, selection, revocation,
statistics and confirmation. Every POST takes an `Idempotency-Key`."""

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from ninja import Query, Router

from piaotong.accounts.access import Actor
from piaotong.accounts.permissions import Action
from piaotong.api.errors import violation_json
from piaotong.api.idempotency import idempotent, json_response
from piaotong.deduction import actions
from piaotong.deduction.access import (
    get_buyer_for_actor,
    get_received_invoice_for_actor,
    received_invoices,
)
from piaotong.deduction.actions import SelectionErrors, SelectionItem
from piaotong.deduction.models import DeductionPeriod
from piaotong.deduction.periods import parse_period
from piaotong.deduction.queries import filter_received, with_buyer_state
from piaotong.deduction.schemas import (
    PeriodIn,
    ReceivedFilters,
    SelectIn,
    period_out,
    received_out,
    selection_out,
)
from piaotong.lib.errors import RuleViolation

router = Router(tags=["deduction"])
ERRORS: dict[int, Any] = {400: dict, 403: dict, 404: dict, 409: dict, 422: dict}


def _actor(request: HttpRequest) -> Actor:
    return request.auth  # type: ignore[attr-defined,no-any-return]


def _selection_errors(error: SelectionErrors, refs: list[str]) -> HttpResponse:
    return json_response(
        422,
        {
            "detail": [
                {
                    "field": "items",
                    "code": "selection_invalid",
                    "message": f"{len(error.items)} invoices cannot be selected; nothing was selected.",
                    "message_zh": f"{len(error.items)} 张发票不能勾选，全部未勾选。",
                    "message_en": f"{len(error.items)} invoices cannot be selected; nothing was selected.",
                }
            ],
            "items": [
                {
                    "index": index,
                    "invoice": refs[index] if index < len(refs) else None,
                    "errors": [violation_json(v) for v in violations],
                }
                for index, violations in sorted(error.items.items())
            ],
        },
    )


@router.get("/received", response={200: dict, 403: dict, 404: dict}, summary="Received invoices")
def list_received(
    request: HttpRequest, filters: Query[ReceivedFilters], page: int = 1, page_size: int = 50
) -> HttpResponse:
    actor = _actor(request)
    data = filters.model_dump()
    buyer = get_buyer_for_actor(actor, data.pop("organisation"))
    if data.get("period"):
        data["period"] = parse_period(data["period"])
    page, page_size = max(page, 1), min(max(page_size, 1), 500)
    invoices = filter_received(received_invoices(actor, [buyer.pk]), **data)
    start = (page - 1) * page_size
    rows = with_buyer_state(invoices).order_by("-issue_date", "-id")[start : start + page_size]
    return json_response(
        200,
        {
            "count": invoices.count(),
            "page": page,
            "page_size": page_size,
            "results": [received_out(i) for i in rows],
        },
    )


@router.get("/received/{ref}", response={200: dict, 404: dict}, summary="One received invoice")
def get_received(request: HttpRequest, ref: str) -> HttpResponse:
    invoice = get_received_invoice_for_actor(_actor(request), ref)
    [annotated] = with_buyer_state(received_invoices(_actor(request)).filter(pk=invoice.pk))
    return json_response(200, received_out(annotated))


@router.post("/received/{ref}/book", response={200: dict, **ERRORS}, summary="Book (入账确认)")
@idempotent
def book(request: HttpRequest, ref: str) -> HttpResponse:
    invoice = get_received_invoice_for_actor(_actor(request), ref)
    actions.do_book_invoice(_actor(request), invoice)
    return get_received(request, ref)


@router.post("/received/{ref}/revoke", response={200: dict, **ERRORS}, summary="Revoke a selection")
@idempotent
def revoke(request: HttpRequest, ref: str) -> HttpResponse:
    invoice = get_received_invoice_for_actor(_actor(request), ref)
    selection = actions.do_revoke_selection(_actor(request), invoice)
    selection.invoice = invoice
    return json_response(200, selection_out(selection))


@router.post(
    "/periods/{period}/select",
    response={201: dict, **ERRORS},
    summary="Select invoices in a period (勾选), all or nothing",
)
@idempotent
def select(request: HttpRequest, period: str, payload: SelectIn) -> HttpResponse:
    actor = _actor(request)
    buyer = get_buyer_for_actor(actor, payload.organisation, Action.SELECT_DEDUCTION)
    refs = [item.invoice for item in payload.items]
    items, missing = [], {}
    for index, item in enumerate(payload.items):
        try:
            invoice = get_received_invoice_for_actor(actor, item.invoice)
        except Http404:
            missing[index] = [
                RuleViolation(
                    "invoice",
                    "not_found",
                    _("No received invoice %(ref)s: check the number or id."),
                    {"ref": item.invoice},
                )
            ]
            continue
        items.append(SelectionItem(invoice, item.deduct, item.effective_tax, item.reason))
    if missing:
        return _selection_errors(SelectionErrors(missing), refs)
    try:
        selections = actions.do_select_for_deduction(actor, buyer, period, items)
    except SelectionErrors as error:
        return _selection_errors(error, refs)
    return json_response(
        201, {"count": len(selections), "selections": [selection_out(s) for s in selections]}
    )


def _period_response(buyer_id: int, code: str) -> HttpResponse:
    row = DeductionPeriod.objects.filter(buyer_id=buyer_id, period=code).first()
    statistics = None
    if row is not None:
        statistics = actions.current_statistics(row) if row.is_open else row.statistics
    return json_response(200, period_out(row, code, statistics))


@router.get("/periods/{period}", response={200: dict, **ERRORS}, summary="A deduction period")
def get_period(request: HttpRequest, period: str, organisation: str | None = None) -> HttpResponse:
    buyer = get_buyer_for_actor(_actor(request), organisation)
    return _period_response(buyer.pk, parse_period(period))


def _step(
    request: HttpRequest, period: str, payload: PeriodIn, step: Any, needed: Action
) -> HttpResponse:
    actor = _actor(request)
    buyer = get_buyer_for_actor(actor, payload.organisation, needed)
    try:
        row = step(actor, buyer, period)
    except SelectionErrors as error:
        return _selection_errors(error, [])
    return _period_response(buyer.pk, row.period)


@router.post("/periods/{period}/statistics", response={200: dict, **ERRORS}, summary="申请统计")
@idempotent
def apply_statistics(request: HttpRequest, period: str, payload: PeriodIn) -> HttpResponse:
    return _step(request, period, payload, actions.do_apply_statistics, Action.SELECT_DEDUCTION)


@router.post(
    "/periods/{period}/statistics/revoke", response={200: dict, **ERRORS}, summary="撤销统计"
)
@idempotent
def revoke_statistics(request: HttpRequest, period: str, payload: PeriodIn) -> HttpResponse:
    return _step(request, period, payload, actions.do_revoke_statistics, Action.SELECT_DEDUCTION)


@router.post("/periods/{period}/confirm", response={200: dict, **ERRORS}, summary="确认签名")
@idempotent
def confirm(request: HttpRequest, period: str, payload: PeriodIn) -> HttpResponse:
    return _step(request, period, payload, actions.do_confirm_deduction, Action.CONFIRM_DEDUCTION)
