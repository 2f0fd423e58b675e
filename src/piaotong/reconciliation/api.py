"""Endpoints under /api/v1/reconciliation: upload, job status and issues, results, match by
hand and unpair, export, select the matched invoices for deduction.

The upload is multipart, so its `Idempotency-Key` is kept on the import job itself (with the
file's SHA-256 and the options): a retry of the same upload returns the first job.
"""

import tempfile
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F
from django.http import FileResponse, HttpRequest, HttpResponse
from ninja import File, Form, Router
from ninja.files import UploadedFile

from piaotong.accounts.access import Actor
from piaotong.api.errors import violations_json
from piaotong.api.idempotency import HEADER, idempotent, json_response
from piaotong.reconciliation import actions
from piaotong.reconciliation.access import (
    get_item_for_actor,
    get_job_for_actor,
    get_organisation_for_import,
    get_received_invoice,
    jobs_for_actor,
)
from piaotong.reconciliation.choices import ImportKind, ItemStatus
from piaotong.reconciliation.export import write_items_xlsx
from piaotong.reconciliation.models import ReconciliationItem
from piaotong.reconciliation.runner import start_import
from piaotong.reconciliation.schemas import DeductIn, MatchIn, issue_out, item_out, job_out

router = Router(tags=["reconciliation"])
ERRORS: dict[int, Any] = {400: dict, 403: dict, 404: dict, 409: dict, 422: dict}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _actor(request: HttpRequest) -> Actor:
    return request.auth  # type: ignore[attr-defined,no-any-return]


@router.post(
    "/imports",
    response={202: dict, 200: dict, **ERRORS},
    summary="Upload a file to import and reconcile",
)
def upload(
    request: HttpRequest,
    file: File[UploadedFile],
    organisation_tax_id: Form[str] = "",
    kind: Form[str] = ImportKind.PURCHASE_RECORDS,
    default_seller_tax_id: Form[str] = "",
    date_window_days: Form[int] = 10,
    per_line_tolerance: Form[Decimal] = Decimal("0.01"),
    per_invoice_tolerance: Form[Decimal] = Decimal("1.27"),
) -> HttpResponse:
    actor = _actor(request)
    organisation = get_organisation_for_import(actor, organisation_tax_id)
    options = actions.ImportOptions(
        kind=kind,
        default_seller_tax_id=default_seller_tax_id.strip(),
        date_window_days=date_window_days,
        per_line_tolerance=per_line_tolerance,
        per_invoice_tolerance=per_invoice_tolerance,
    )
    key = (request.headers.get(HEADER) or "").strip()[:200]
    try:
        job, created = actions.do_create_import_job(
            actor, organisation, file, file.name or "upload", options, idempotency_key=key
        )
    except actions.IdempotencyConflict as conflict:
        return json_response(409, violations_json([conflict]))
    if created:
        start_import(job)
    response = json_response(202 if created else 200, job_out(job))
    if not created:
        response["Idempotent-Replayed"] = "true"
    return response


@router.get("/imports", response={200: dict}, summary="The latest imports")
def list_imports(request: HttpRequest) -> HttpResponse:
    jobs = jobs_for_actor(_actor(request))[:100]
    return json_response(200, {"results": [job_out(job) for job in jobs]})


@router.get(
    "/imports/{uid}", response={200: dict, 404: dict}, summary="Status and progress of an import"
)
def get_import(request: HttpRequest, uid: str) -> HttpResponse:
    return json_response(200, job_out(get_job_for_actor(_actor(request), uid)))


@router.get(
    "/imports/{uid}/issues",
    response={200: dict, 404: dict},
    summary="Why an import was refused, per row",
)
def list_issues(request: HttpRequest, uid: str) -> HttpResponse:
    job = get_job_for_actor(_actor(request), uid)
    return json_response(
        200, {"count": job.error_count, "issues": [issue_out(i) for i in job.issues.all()[:1000]]}
    )


@router.get(
    "/imports/{uid}/items", response={200: dict, 404: dict}, summary="Results with explanations"
)
def list_items(
    request: HttpRequest, uid: str, status: str = "", page: int = 1, page_size: int = 100
) -> HttpResponse:
    job = get_job_for_actor(_actor(request), uid)
    page, page_size = max(page, 1), min(max(page_size, 1), 1000)
    items = ReconciliationItem.objects.filter(job=job).select_related("invoice")
    if status in ItemStatus.values:
        items = items.filter(status=status)
    total = items.count()
    start = (page - 1) * page_size
    rows = items.order_by(F("row").asc(nulls_last=True), "id")[start : start + page_size]
    return json_response(
        200,
        {
            "count": total,
            "page": page,
            "page_size": page_size,
            "results": [item_out(i) for i in rows],
        },
    )


@router.post(
    "/imports/{uid}/rows/{row}/match",
    response={200: dict, **ERRORS},
    summary="Pair a row with a received invoice by hand",
)
@idempotent
def match_row(request: HttpRequest, uid: str, row: int, payload: MatchIn) -> HttpResponse:
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    item = get_item_for_actor(actor, job, row=row)
    invoice = get_received_invoice(job, payload.invoice_number)
    item = actions.do_match_manually(actor, item, invoice)
    return json_response(
        200, item_out(ReconciliationItem.objects.select_related("invoice").get(pk=item.pk))
    )


@router.post(
    "/imports/{uid}/rows/{row}/unmatch", response={200: dict, **ERRORS}, summary="Unpair a row"
)
@idempotent
def unmatch_row(request: HttpRequest, uid: str, row: int) -> HttpResponse:
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    item = actions.do_unmatch(actor, get_item_for_actor(actor, job, row=row))
    return json_response(200, item_out(item))


@router.get(
    "/imports/{uid}/export", response={200: None, 404: dict}, summary="Results as Excel (.xlsx)"
)
def export_items(request: HttpRequest, uid: str, status: str = "") -> FileResponse:
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    items = ReconciliationItem.objects.filter(job=job)
    if status in ItemStatus.values:
        items = items.filter(status=status)
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    output = tempfile.TemporaryFile(dir=settings.VAR_DIR)  # noqa: SIM115 - FileResponse closes it
    rows = write_items_xlsx(items, output)
    actions.do_record_results_export(actor, job, rows, status)
    output.seek(0)
    return FileResponse(
        output,
        as_attachment=True,
        filename=f"reconciliation-{uuid.UUID(str(job.uid)).hex[:8]}.xlsx",
        content_type=XLSX,
    )


@router.post(
    "/imports/{uid}/deduct",
    response={200: dict, **ERRORS},
    summary="Select the invoices paired exactly or by hand for deduction",
)
@idempotent
def deduct(request: HttpRequest, uid: str, payload: DeductIn) -> HttpResponse:
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    outcome = actions.do_select_matched_for_deduction(
        actor, job, payload.period, skip_refused=payload.skip_refused
    )
    return json_response(
        200,
        {
            "selected": outcome.selected,
            "skipped": [
                {"number": number, **violations_json(violations)}
                for number, violations in outcome.skipped
            ],
        },
    )
