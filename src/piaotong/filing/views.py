"""Web UI of the VAT return (增值税申报): overview with deadline reminders, the return page
(live computation, saved versions, differences, drill-down links), drill-down lists, exports,
and the prepare / submit / amend steps.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.deduction.access import buyers_for_actor, get_buyer_for_actor
from piaotong.deduction.web import actor_of, show_refusal
from piaotong.filing import actions
from piaotong.filing.aggregate import drill_down, invoice_counts
from piaotong.filing.choices import DrillPart
from piaotong.filing.compute import DRILL_DOWN, LINES, differences
from piaotong.filing.export import return_document, return_xml, write_return_xlsx
from piaotong.filing.forms import AmendForm
from piaotong.filing.models import VatReturn
from piaotong.filing.periods import TaxPeriod, last_ended_period
from piaotong.invoices.views import login_required
from piaotong.lib.errors import RuleViolation, RuleViolations

PAGE_SIZE = 50
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _organisation(request: HttpRequest, action: Action = Action.VIEW_RETURN) -> Organisation:
    return get_buyer_for_actor(
        actor_of(request), request.GET.get("org") or request.POST.get("org"), action
    )


def _period(organisation: Organisation, text: str) -> TaxPeriod:
    try:
        return actions.check_period(organisation, text)
    except RuleViolation:
        raise Http404("No such period") from None


def _return_url(organisation: Organisation, period: str) -> str:
    return reverse("filing:period", kwargs={"period": period}) + f"?org={organisation.pk}"


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    organisation = _organisation(request)
    quarterly = organisation.is_small_scale and request.GET.get("quarterly") == "1"
    context = {
        "buyer": organisation,
        "buyers": buyers_for_actor(actor_of(request), Action.VIEW_RETURN),
        "returns": VatReturn.objects.filter(organisation=organisation).order_by(
            "-period", "-version"
        ),
        "due": last_ended_period(timezone.localdate(), quarterly),
    }
    return render(request, "filing/overview.html", context)


def _lines(
    kind: str, values: dict[str, str], previous: dict[str, str] | None
) -> list[dict[str, Any]]:
    changed = {c.name: c for c in differences(previous, values)} if previous else {}
    return [
        {
            "name": name,
            "label": label,
            "value": values.get(name, ""),
            "drill": DRILL_DOWN.get(name),
            "change": changed.get(name),
        }
        for name, label in LINES[kind].items()
    ]


@login_required
@require_GET
def return_page(request: HttpRequest, period: str) -> HttpResponse:
    actor = actor_of(request)
    organisation = _organisation(request)
    tax_period = _period(organisation, period)
    versions = list(
        VatReturn.objects.filter(organisation=organisation, period=tax_period.code).order_by(
            "-version"
        )
    )
    shown = _chosen_version(request, versions)
    live = actions.compute_numbers(organisation, tax_period)
    numbers = shown.numbers if shown else live
    previous = next((v for v in versions if shown and v.version == shown.version - 1), None)
    today = timezone.localdate()
    context = {
        "buyer": organisation,
        "period": tax_period,
        "versions": versions,
        "shown": shown,
        "numbers": numbers,
        "lines": _lines(
            numbers["taxpayer_kind"],
            numbers["lines"],
            previous.numbers["lines"] if previous else None,
        ),
        "previous": previous,
        "stale": shown is not None and shown.numbers != live,
        "live_changes": differences(shown.numbers["lines"], live["lines"]) if shown else [],
        "counts": invoice_counts(organisation, tax_period),
        "deadline": tax_period.deadline(),
        "days_left": (tax_period.deadline() - today).days,
        "ended": tax_period.has_ended(today),
        "may_prepare": actor.can(Action.PREPARE_RETURN, organisation.pk),
        "may_submit": actor.can(Action.SUBMIT_RETURN, organisation.pk),
        "amend_form": AmendForm(),
    }
    return render(request, "filing/return.html", context)


def _chosen_version(request: HttpRequest, versions: list[VatReturn]) -> VatReturn | None:
    wanted = request.GET.get("version", "")
    if wanted.isdigit():
        for version in versions:
            if version.version == int(wanted):
                return version
        raise Http404("No such version")
    return versions[0] if versions else None


STEPS = {
    "prepare": Action.PREPARE_RETURN,
    "submit": Action.SUBMIT_RETURN,
    "amend": Action.PREPARE_RETURN,
}


@login_required
@require_POST
def step(request: HttpRequest, period: str, verb: str) -> HttpResponse:
    if verb not in STEPS:
        raise Http404("No such step")
    actor = actor_of(request)
    organisation = _organisation(request, STEPS[verb])
    tax_period = _period(organisation, period)
    try:
        if verb == "prepare":
            result = actions.do_prepare_return(actor, organisation, tax_period.code)
            message = _("Draft saved (version %(version)s).")
        elif verb == "submit":
            result = actions.do_submit_return(actor, organisation, tax_period.code)
            message = _("Return submitted (version %(version)s); its numbers are frozen.")
        else:
            reason = request.POST.get("reason", "")
            result = actions.do_amend_return(actor, organisation, tax_period.code, reason)
            message = _("Amendment started as version %(version)s.")
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, message % {"version": result.version})
    return redirect(_return_url(organisation, tax_period.code))


@login_required
@require_GET
def drill(request: HttpRequest, period: str) -> HttpResponse:
    organisation = _organisation(request)
    tax_period = _period(organisation, period)
    part = request.GET.get("part", DrillPart.OUTPUT)
    if part not in DrillPart.values:
        raise Http404("No such part")
    filters = {k: request.GET[k] for k in ("rate", "rates", "special") if request.GET.get(k)}
    invoices = drill_down(organisation, tax_period, part, filters)
    context = {
        "buyer": organisation,
        "period": tax_period,
        "part": DrillPart(part),
        "filters": filters,
        "page": Paginator(invoices, PAGE_SIZE).get_page(request.GET.get("page")),
    }
    return render(request, "filing/drill.html", context)


@login_required
@require_GET
def export(request: HttpRequest, period: str, version: int, fmt: str) -> HttpResponseBase:
    actor = actor_of(request)
    organisation = _organisation(request)
    tax_period = _period(organisation, period)
    vat_return = (
        VatReturn.objects.select_related("organisation")
        .filter(organisation=organisation, period=tax_period.code, version=version)
        .first()
    )
    if vat_return is None or fmt not in {"json", "xml", "xlsx"}:
        raise Http404("No such return")
    actions.do_record_return_export(actor, vat_return, fmt)
    name = f"vat-return-{organisation.tax_id}-{tax_period.code}-v{version}.{fmt}"
    if fmt == "json":
        body = json.dumps(return_document(vat_return), ensure_ascii=False, indent=2).encode()
        response = HttpResponse(body, content_type="application/json")
    elif fmt == "xml":
        response = HttpResponse(return_xml(vat_return), content_type="application/xml")
    else:
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        output = tempfile.TemporaryFile(dir=settings.VAR_DIR)  # noqa: SIM115 - FileResponse closes it
        write_return_xlsx(vat_return, output)
        output.seek(0)
        return FileResponse(output, as_attachment=True, filename=name, content_type=XLSX)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
