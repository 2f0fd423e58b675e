"""Invoice endpoints under /api/v1/invoices: drafts, review, issuing, bulk, get and list."""

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router

from piaotong.accounts.access import Actor
from piaotong.accounts.permissions import Action
from piaotong.api.idempotency import idempotent, json_response
from piaotong.invoices import actions
from piaotong.invoices.access import (
    get_invoice_for_actor,
    get_seller_for_actor,
    require_invoice_reader,
    visible_invoices,
)
from piaotong.invoices.queries import filter_invoices
from piaotong.invoices.schemas import (
    BulkIn,
    InvoiceFilters,
    InvoiceIn,
    RejectIn,
    invoice_out,
    invoice_summary,
)

router = Router(tags=["invoices"])
ERRORS: dict[int, Any] = {400: dict, 403: dict, 404: dict, 409: dict, 422: dict}


def _actor(request: HttpRequest) -> Actor:
    return request.auth  # type: ignore[attr-defined,no-any-return]


def _detail(invoice_id: int, status: int = 200) -> HttpResponse:
    from piaotong.invoices.models import Invoice

    invoice = Invoice.objects.prefetch_related("lines").get(pk=invoice_id)
    return json_response(status, invoice_out(invoice))


@router.post("", response={201: dict, **ERRORS}, summary="Issue an invoice now (开具)")
@idempotent
def issue_invoice(request: HttpRequest, payload: InvoiceIn) -> HttpResponse:
    seller = get_seller_for_actor(_actor(request), payload.seller_tax_id, Action.ISSUE_INVOICE)
    invoice = actions.do_issue_new_invoice(_actor(request), seller, payload.to_draft())
    return _detail(invoice.pk, 201)


@router.post(
    "/bulk", response={201: dict, **ERRORS}, summary="Issue up to 1,000 invoices, all or nothing"
)
@idempotent
def issue_bulk(request: HttpRequest, payload: BulkIn) -> HttpResponse:
    seller = get_seller_for_actor(_actor(request), payload.seller_tax_id, Action.ISSUE_INVOICE)
    invoices = actions.do_issue_invoices(
        _actor(request), seller, [i.to_draft() for i in payload.invoices]
    )
    return json_response(
        201, {"count": len(invoices), "invoices": [invoice_summary(i) for i in invoices]}
    )


@router.post("/drafts", response={201: dict, **ERRORS}, summary="Save a draft (草稿)")
@idempotent
def create_draft(request: HttpRequest, payload: InvoiceIn) -> HttpResponse:
    seller = get_seller_for_actor(_actor(request), payload.seller_tax_id, Action.DRAFT_INVOICE)
    invoice = actions.do_create_draft(_actor(request), seller, payload.to_draft())
    return _detail(invoice.pk, 201)


@router.put("/{ref}", response={200: dict, **ERRORS}, summary="Replace a draft's content")
def update_draft(request: HttpRequest, ref: str, payload: InvoiceIn) -> HttpResponse:
    # PUT is idempotent by itself: the same body twice leaves the same draft.
    invoice = get_invoice_for_actor(_actor(request), ref)
    invoice = actions.do_update_draft(_actor(request), invoice, payload.to_draft())
    return _detail(invoice.pk)


@router.post("/{ref}/submit", response={200: dict, **ERRORS}, summary="Submit a draft for review")
@idempotent
def submit_draft(request: HttpRequest, ref: str) -> HttpResponse:
    invoice = actions.do_submit_for_review(
        _actor(request), get_invoice_for_actor(_actor(request), ref)
    )
    return _detail(invoice.pk)


@router.post(
    "/{ref}/approve", response={200: dict, **ERRORS}, summary="Approve and issue (复核通过)"
)
@idempotent
def approve_draft(request: HttpRequest, ref: str) -> HttpResponse:
    invoice = actions.do_approve_invoice(
        _actor(request), get_invoice_for_actor(_actor(request), ref)
    )
    return _detail(invoice.pk)


@router.post(
    "/{ref}/reject", response={200: dict, **ERRORS}, summary="Send a draft back with a reason"
)
@idempotent
def reject_draft(request: HttpRequest, ref: str, payload: RejectIn) -> HttpResponse:
    invoice = get_invoice_for_actor(_actor(request), ref)
    invoice = actions.do_reject_invoice(_actor(request), invoice, payload.reason)
    return _detail(invoice.pk)


@router.post("/{ref}/issue", response={200: dict, **ERRORS}, summary="Issue a saved draft")
@idempotent
def issue_draft(request: HttpRequest, ref: str) -> HttpResponse:
    invoice = actions.do_issue_invoice(_actor(request), get_invoice_for_actor(_actor(request), ref))
    return _detail(invoice.pk)


@router.get("/{ref}", response={200: dict, 404: dict}, summary="One invoice by id or number")
def get_invoice(request: HttpRequest, ref: str) -> HttpResponse:
    return _detail(get_invoice_for_actor(_actor(request), ref).pk)


@router.get("", response={200: dict}, summary="List invoices with filters and pagination")
def list_invoices(
    request: HttpRequest, filters: Query[InvoiceFilters], page: int = 1, page_size: int = 50
) -> HttpResponse:
    page, page_size = max(page, 1), min(max(page_size, 1), 500)
    actor = _actor(request)
    require_invoice_reader(actor)
    invoices = filter_invoices(visible_invoices(actor), **filters.model_dump())
    total = invoices.count()
    start = (page - 1) * page_size
    rows = invoices.order_by("-issue_date", "-id")[start : start + page_size]
    return json_response(
        200,
        {
            "count": total,
            "page": page,
            "page_size": page_size,
            "results": [invoice_summary(i) for i in rows],
        },
    )


# Red-letter and void endpoints, and authority flags, live in their own modules, under the same
# /invoices prefix.
from piaotong.invoices.api_authority import router as authority_router  # noqa: E402
from piaotong.invoices.api_redletter import router as redletter_router  # noqa: E402

router.add_router("", redletter_router)
router.add_router("", authority_router)
