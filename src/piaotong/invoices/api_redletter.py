"""Red-letter (红字) and void (作废) endpoints under /api/v1/invoices.

POST /{ref}/red-letter                       file a 红字发票信息确认单 (201)
POST /{ref}/void                             void a paper invoice
GET  /red-letter/requests                    requests about the caller's invoices
GET  /red-letter/requests/{uid}              one request
POST /red-letter/requests/{uid}/confirm      the counterparty confirms (the red invoice follows)
POST /red-letter/requests/{uid}/refuse       the counterparty refuses, with a reason
POST /red-letter/requests/{uid}/withdraw     the initiator withdraws

Every POST takes an `Idempotency-Key`; a retry replays the first answer.
"""

from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Field, Router, Schema
from pydantic import ConfigDict

from piaotong.accounts.access import Actor
from piaotong.api.idempotency import idempotent, json_response
from piaotong.invoices import redletter
from piaotong.invoices.access import (
    get_confirmation_for_actor,
    get_invoice_for_actor,
    visible_confirmations,
)
from piaotong.invoices.choices import RedLetterSide, RedLetterStatus
from piaotong.invoices.models import Invoice, RedLetterConfirmation
from piaotong.invoices.redletter_rules import RedLineRequest
from piaotong.invoices.schemas import invoice_out

router = Router(tags=["red-letter"])
ERRORS: dict[int, Any] = {400: dict, 403: dict, 404: dict, 409: dict, 422: dict}


class RedLineIn(Schema):
    model_config = ConfigDict(extra="forbid")

    position: int = Field(ge=1, le=2000, description="Line number of the blue invoice")
    amount: Decimal = Field(max_digits=20, description="Pre-tax amount to reverse (positive)")


class RedLetterIn(Schema):
    model_config = ConfigDict(extra="forbid")

    side: RedLetterSide = Field(description="Which party of the invoice files: seller or buyer")
    reason: str = Field(
        max_length=2,
        examples=["01"],
        description="01 开票有误, 02 销货退回, 03 服务终止, 04 销售折让",
    )
    full: bool = True
    lines: list[RedLineIn] = Field(default_factory=list, max_length=2000)

    def to_input(self) -> redletter.RedLetterInput:
        lines = [RedLineRequest(line.position, line.amount) for line in self.lines]
        return redletter.RedLetterInput(self.reason, self.full, lines)


class ReasonIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=500)


def _actor(request: HttpRequest) -> Actor:
    return request.auth  # type: ignore[attr-defined,no-any-return]


def confirmation_out(confirmation: RedLetterConfirmation) -> dict[str, Any]:
    blue = confirmation.blue_invoice
    return {
        "id": str(confirmation.uid),
        "blue_number": blue.number,
        "initiator_side": confirmation.initiator_side,
        "initiator": confirmation.initiator_name,
        "reason": confirmation.reason,
        "full": confirmation.is_full,
        "lines": confirmation.lines,
        "total_amount": str(confirmation.total_amount),
        "total_tax": str(confirmation.total_tax),
        "total_with_tax": str(confirmation.total_with_tax),
        "status": confirmation.status,
        "platform_code": confirmation.platform_code,
        "confirmation_required": confirmation.confirmation_required,
        "requested_by": confirmation.requested_by_label,
        "created_at": confirmation.created_at.isoformat(),
        "expires_at": confirmation.expires_at.isoformat(),
        "answered_at": confirmation.answered_at.isoformat() if confirmation.answered_at else None,
        "answered_by": confirmation.answered_by_label,
        "refusal_reason": confirmation.refusal_reason,
        "red_number": confirmation.red_number or None,
    }


def _out(confirmation: RedLetterConfirmation, status: int = 200) -> HttpResponse:
    fresh = RedLetterConfirmation.objects.select_related("blue_invoice").get(pk=confirmation.pk)
    return json_response(status, confirmation_out(fresh))


@router.post(
    "/{ref}/red-letter",
    response={201: dict, **ERRORS},
    summary="File a red-letter confirmation (红字发票信息确认单)",
)
@idempotent
def request_red_letter(request: HttpRequest, ref: str, payload: RedLetterIn) -> HttpResponse:
    invoice = get_invoice_for_actor(_actor(request), ref)
    confirmation = redletter.do_request_red_letter(
        _actor(request), invoice, payload.side, payload.to_input()
    )
    return _out(confirmation, 201)


@router.post("/{ref}/void", response={200: dict, **ERRORS}, summary="Void a paper invoice (作废)")
@idempotent
def void_invoice(request: HttpRequest, ref: str, payload: ReasonIn) -> HttpResponse:
    invoice = get_invoice_for_actor(_actor(request), ref)
    invoice = redletter.do_void_invoice(_actor(request), invoice, payload.reason)
    return json_response(200, invoice_out(Invoice.objects.get(pk=invoice.pk)))


@router.get(
    "/red-letter/requests", response={200: dict}, summary="Red-letter requests, newest first"
)
def list_requests(
    request: HttpRequest, status: RedLetterStatus | None = None, page: int = 1, page_size: int = 50
) -> HttpResponse:
    page, page_size = max(page, 1), min(max(page_size, 1), 500)
    rows = visible_confirmations(_actor(request)).select_related("blue_invoice")
    if status:
        rows = rows.filter(status=status)
    start = (page - 1) * page_size
    return json_response(
        200,
        {
            "count": rows.count(),
            "page": page,
            "page_size": page_size,
            "results": [confirmation_out(c) for c in rows[start : start + page_size]],
        },
    )


@router.get(
    "/red-letter/requests/{uid}", response={200: dict, 404: dict}, summary="One red-letter request"
)
def get_request(request: HttpRequest, uid: str) -> HttpResponse:
    return _out(get_confirmation_for_actor(_actor(request), uid))


@router.post(
    "/red-letter/requests/{uid}/confirm",
    response={200: dict, **ERRORS},
    summary="Confirm as the counterparty (确认); the red invoice is issued",
)
@idempotent
def confirm_request(request: HttpRequest, uid: str) -> HttpResponse:
    confirmation = get_confirmation_for_actor(_actor(request), uid)
    return _out(redletter.do_confirm_red_letter(_actor(request), confirmation))


@router.post(
    "/red-letter/requests/{uid}/refuse",
    response={200: dict, **ERRORS},
    summary="Refuse as the counterparty (拒绝)",
)
@idempotent
def refuse_request(request: HttpRequest, uid: str, payload: ReasonIn) -> HttpResponse:
    confirmation = get_confirmation_for_actor(_actor(request), uid)
    return _out(redletter.do_refuse_red_letter(_actor(request), confirmation, payload.reason))


@router.post(
    "/red-letter/requests/{uid}/withdraw",
    response={200: dict, **ERRORS},
    summary="Withdraw as the initiator (撤销)",
)
@idempotent
def withdraw_request(request: HttpRequest, uid: str) -> HttpResponse:
    confirmation = get_confirmation_for_actor(_actor(request), uid)
    return _out(redletter.do_withdraw_red_letter(_actor(request), confirmation))
