"""Endpoints under /api/v1/filing: compute a return, prepare / submit / amend it, read and
export its versions, and list the invoices behind its numbers. POSTs take an `Idempotency-Key`."""

import tempfile
from typing import Any

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from ninja import Router

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.api.idempotency import idempotent, json_response
from piaotong.deduction.access import get_buyer_for_actor
from piaotong.filing import actions
from piaotong.filing.aggregate import drill_down
from piaotong.filing.choices import DrillPart
from piaotong.filing.export import return_xml, write_return_xlsx
from piaotong.filing.models import VatReturn
from piaotong.filing.schemas import AmendIn, StepIn, version_out

router = Router(tags=["filing"])
ERRORS: dict[int, Any] = {400: dict, 403: dict, 404: dict, 409: dict, 422: dict}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _actor(request: HttpRequest) -> Actor:
    return request.auth  # type: ignore[attr-defined,no-any-return]


def _org(request: HttpRequest, organisation: str | None, action: Action) -> Organisation:
    return get_buyer_for_actor(_actor(request), organisation, action)


@router.get("/{period}", response={200: dict, **ERRORS}, summary="Compute the return now")
def compute(request: HttpRequest, period: str, organisation: str | None = None) -> HttpResponse:
    org = _org(request, organisation, Action.VIEW_RETURN)
    tax_period = actions.check_period(org, period)
    versions = VatReturn.objects.filter(organisation=org, period=tax_period.code).order_by(
        "version"
    )
    return json_response(
        200,
        {
            "computed": actions.compute_numbers(org, tax_period),
            "deadline": tax_period.deadline().isoformat(),
            "versions": [
                {"version": v.version, "status": v.status, "payable": str(v.payable)}
                for v in versions
            ],
        },
    )


def _version(org: Organisation, period: str, version: int) -> VatReturn:
    found = (
        VatReturn.objects.select_related("organisation")
        .filter(organisation=org, period=actions.check_period(org, period).code, version=version)
        .first()
    )
    if found is None:
        raise Http404("No such version")
    return found


@router.post("/{period}/prepare", response={200: dict, **ERRORS}, summary="Save the draft")
@idempotent
def prepare(request: HttpRequest, period: str, payload: StepIn) -> HttpResponse:
    org = _org(request, payload.organisation, Action.PREPARE_RETURN)
    vat_return = actions.do_prepare_return(_actor(request), org, period)
    return json_response(200, version_out(vat_return))


@router.post("/{period}/submit", response={200: dict, **ERRORS}, summary="Submit (申报)")
@idempotent
def submit(request: HttpRequest, period: str, payload: StepIn) -> HttpResponse:
    org = _org(request, payload.organisation, Action.SUBMIT_RETURN)
    vat_return = actions.do_submit_return(_actor(request), org, period)
    return json_response(200, version_out(vat_return))


@router.post("/{period}/amend", response={200: dict, **ERRORS}, summary="Amend (更正申报)")
@idempotent
def amend(request: HttpRequest, period: str, payload: AmendIn) -> HttpResponse:
    org = _org(request, payload.organisation, Action.PREPARE_RETURN)
    vat_return = actions.do_amend_return(_actor(request), org, period, payload.reason)
    return json_response(200, version_out(vat_return))


@router.get(
    "/{period}/versions/{version}",
    response={200: dict, **ERRORS},
    summary="One version: format=json (default), xml or xlsx",
)
def get_version(
    request: HttpRequest,
    period: str,
    version: int,
    organisation: str | None = None,
    format: str = "json",
) -> HttpResponseBase:
    org = _org(request, organisation, Action.VIEW_RETURN)
    vat_return = _version(org, period, version)
    if format not in {"json", "xml", "xlsx"}:
        raise Http404("No such format")
    actions.do_record_return_export(_actor(request), vat_return, format)
    if format == "xml":
        return HttpResponse(return_xml(vat_return), content_type="application/xml")
    if format == "xlsx":
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        output = tempfile.TemporaryFile(dir=settings.VAR_DIR)  # noqa: SIM115 - FileResponse closes it
        write_return_xlsx(vat_return, output)
        output.seek(0)
        return FileResponse(output, as_attachment=True, content_type=XLSX)
    return json_response(200, version_out(vat_return))


@router.get(
    "/{period}/invoices",
    response={200: dict, **ERRORS},
    summary="The invoices behind a number (drill-down), paginated",
)
def invoices(
    request: HttpRequest,
    period: str,
    part: str = DrillPart.OUTPUT,
    rate: str | None = None,
    rates: str | None = None,
    special: str | None = None,
    organisation: str | None = None,
    page: int = 1,
    page_size: int = 100,
) -> HttpResponse:
    org = _org(request, organisation, Action.VIEW_RETURN)
    if part not in DrillPart.values:
        raise Http404("No such part")
    filters = {k: v for k, v in {"rate": rate, "rates": rates, "special": special}.items() if v}
    found = drill_down(org, actions.check_period(org, period), part, filters)
    page, page_size = max(page, 1), min(max(page_size, 1), 1000)
    start = (page - 1) * page_size
    rows = found.values(
        "uid", "number", "issue_date", "kind", "status", "seller_name", "buyer_name",
        "total_amount", "total_tax",
    )[start : start + page_size]  # fmt: skip
    return json_response(
        200,
        {
            "count": found.count(),
            "page": page,
            "page_size": page_size,
            "results": [
                {key: (str(value) if value is not None else None) for key, value in row.items()}
                for row in rows
            ],
        },
    )
