"""Web UI of purchase reconciliation (进项核对): upload, progress, results with explanations,
match by hand, unpair, export, select for deduction.

Each view builds the actor, asks an access helper, calls at most one action, and renders or
redirects. The job page polls its progress panel with htmx while the import runs (without
JavaScript the panel offers a refresh link).
"""

from __future__ import annotations

import tempfile
import uuid

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from piaotong.accounts.access import Actor, actor_for_request
from piaotong.accounts.permissions import Action
from piaotong.deduction.actions import SelectionErrors
from piaotong.invoices.views import login_required
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.reconciliation import actions
from piaotong.reconciliation.access import (
    get_item_for_actor,
    get_job_for_actor,
    get_received_invoice,
    jobs_for_actor,
    organisations_for_import,
)
from piaotong.reconciliation.choices import CONFIRMED_STATUSES, ItemStatus
from piaotong.reconciliation.export import write_items_xlsx
from piaotong.reconciliation.forms import (
    DeductForm,
    MatchForm,
    StatusFilterForm,
    UploadForm,
    current_period,
)
from piaotong.reconciliation.models import ImportJob, ReconciliationItem
from piaotong.reconciliation.runner import resume_if_stale, start_import

PAGE_SIZE = 100
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    assert actor is not None  # every view here is behind login_required
    return actor


def _violations(error: RuleViolation | RuleViolations) -> list[RuleViolation]:
    return error.violations if isinstance(error, RuleViolations) else [error]


def _job_url(job: ImportJob) -> str:
    return reverse("reconciliation:job", kwargs={"uid": job.uid})


@login_required
@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    """The organisation's imports, newest first, and the upload form."""
    actor = _actor(request)
    organisations = organisations_for_import(actor)
    form = UploadForm(request.POST or None, request.FILES or None, organisations=organisations)
    if request.method == "POST":
        if not organisations.exists():
            raise PermissionDenied("This role cannot import purchase records")
        if form.is_valid():
            try:
                job, _created = actions.do_create_import_job(
                    actor,
                    form.cleaned_data["organisation"],
                    form.cleaned_data["file"],
                    form.cleaned_data["file"].name,
                    form.options(),
                )
            except (RuleViolation, RuleViolations) as error:
                for violation in _violations(error):
                    form.add_error(None, violation.text())
            else:
                start_import(job)
                return redirect(_job_url(job))
    jobs = jobs_for_actor(actor)[:50]
    return render(
        request,
        "reconciliation/index.html",
        {"form": form, "jobs": jobs, "may_import": organisations.exists()},
    )


def _items(job: ImportJob, filters: StatusFilterForm) -> QuerySet[ReconciliationItem]:
    items = ReconciliationItem.objects.filter(job=job).select_related("invoice")
    if filters.is_valid():
        if filters.cleaned_data["status"]:
            items = items.filter(status=filters.cleaned_data["status"])
        number = filters.cleaned_data["number"].strip()
        if number:
            items = items.filter(number__contains=number) | items.filter(
                invoice__number__contains=number
            )
    return items.order_by(F("row").asc(nulls_last=True), "id")


@login_required
@require_GET
def job_detail(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    resume_if_stale(job)
    filters = StatusFilterForm(request.GET)
    page = Paginator(_items(job, filters), PAGE_SIZE).get_page(request.GET.get("page"))
    may_reconcile = actor.can(Action.RECONCILE_PURCHASES, job.organisation_id)
    context = {
        "job": job,
        "page": page,
        "filters": filters,
        "statuses": [(status, job.summary.get(status.value, 0)) for status in ItemStatus],
        "issues": job.issues.all()[:1000],
        "may_reconcile": may_reconcile,
        "match_form": MatchForm(),
        "deduct_form": DeductForm(initial={"period": current_period()}),
        "confirmed": sum(job.summary.get(s.value, 0) for s in CONFIRMED_STATUSES),
    }
    return render(request, "reconciliation/job.html", context)


@login_required
@require_GET
def job_progress(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    """The progress panel (htmx polls it); once the job has finished, the whole page reloads."""
    job = get_job_for_actor(_actor(request), uid)
    resume_if_stale(job)
    if not job.is_running and request.headers.get("HX-Request") == "true":
        return HttpResponseClientRefresh()
    return render(request, "reconciliation/_progress.html", {"job": job})


def _back(job: ImportJob, request: HttpRequest) -> HttpResponse:
    query = request.POST.get("back", "")
    return redirect(_job_url(job) + (f"?{query}" if query and "\n" not in query else ""))


@login_required
@require_POST
def match(request: HttpRequest, uid: uuid.UUID, item_id: int) -> HttpResponse:
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    item = get_item_for_actor(actor, job, item_id=item_id)
    form = MatchForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Enter the invoice number to pair this row with."))
        return _back(job, request)
    try:
        invoice = get_received_invoice(job, form.cleaned_data["invoice_number"])
    except Http404:
        messages.error(
            request,
            _("No invoice %(number)s was received by %(name)s.")
            % {"number": form.cleaned_data["invoice_number"], "name": job.organisation.name},
        )
        return _back(job, request)
    try:
        actions.do_match_manually(actor, item, invoice)
        messages.success(
            request,
            _("Row %(row)s paired with %(number)s.") % {"row": item.row, "number": invoice.number},
        )
    except (RuleViolation, RuleViolations) as error:
        for violation in _violations(error):
            messages.error(request, violation.text())
    return _back(job, request)


@login_required
@require_POST
def unmatch(request: HttpRequest, uid: uuid.UUID, item_id: int) -> HttpResponse:
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    item = get_item_for_actor(actor, job, item_id=item_id)
    try:
        actions.do_unmatch(actor, item)
        messages.success(request, _("Row %(row)s unpaired.") % {"row": item.row})
    except (RuleViolation, RuleViolations) as error:
        for violation in _violations(error):
            messages.error(request, violation.text())
    return _back(job, request)


@login_required
@require_GET
def export(request: HttpRequest, uid: uuid.UUID) -> FileResponse:
    """The (filtered) results as an Excel workbook, built in a temporary file, audited."""
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    filters = StatusFilterForm(request.GET)
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    output = tempfile.TemporaryFile(dir=settings.VAR_DIR)  # noqa: SIM115 - FileResponse closes it
    rows = write_items_xlsx(_items(job, filters), output)
    status = filters.cleaned_data.get("status", "") if filters.is_valid() else ""
    actions.do_record_results_export(actor, job, rows, status)
    output.seek(0)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    return FileResponse(
        output, as_attachment=True, filename=f"reconciliation-{stamp}.xlsx", content_type=XLSX
    )


@login_required
@require_POST
def deduct(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    """Select the invoices paired exactly or by hand for deduction in a period."""
    actor = _actor(request)
    job = get_job_for_actor(actor, uid)
    form = DeductForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return _back(job, request)
    try:
        outcome = actions.do_select_matched_for_deduction(
            actor, job, form.cleaned_data["period"], skip_refused=form.cleaned_data["skip_refused"]
        )
    except (RuleViolation, RuleViolations) as error:
        for violation in _violations(error):
            messages.error(request, violation.text())
    except SelectionErrors as refused:
        messages.error(
            request,
            _("Nothing was selected: %(count)s invoices cannot be selected.")
            % {"count": len(refused.items)},
        )
        for violations in list(refused.items.values())[:20]:
            for violation in violations:
                messages.error(request, violation.text())
    else:
        messages.success(
            request,
            _("%(count)s invoices selected for deduction in %(period)s.")
            % {"count": outcome.selected, "period": form.cleaned_data["period"]},
        )
        for number, violations in outcome.skipped[:20]:
            messages.warning(
                request, f"{number}: " + " ".join(violation.text() for violation in violations)
            )
    return _back(job, request)
