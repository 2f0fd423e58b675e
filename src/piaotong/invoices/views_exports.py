"""Web UI of export jobs (导出任务): ask, watch the progress, download (invoices.export_jobs)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from piaotong.accounts.access import Actor, actor_for_request
from piaotong.invoices import export_jobs
from piaotong.invoices.access import require_invoice_reader, visible_invoices
from piaotong.invoices.forms import ListFilterForm
from piaotong.invoices.models import ExportJob
from piaotong.invoices.queries import filter_invoices
from piaotong.lib.errors import RuleViolation

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    assert actor is not None  # behind login_required
    return actor


def _own_job(request: HttpRequest, uid: uuid.UUID) -> ExportJob:
    job = ExportJob.objects.filter(uid=uid, requested_by=_actor(request).user).first()
    if job is None:
        raise Http404
    return job


@login_required
@require_http_methods(["GET", "POST"])
def export_new(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    require_invoice_reader(actor)
    source = request.POST if request.method == "POST" else request.GET
    filter_form = ListFilterForm(source)
    filters = filter_form.filters()
    if request.method == "POST":
        try:
            job = export_jobs.do_request_export(
                actor, filters, with_documents=request.POST.get("with_documents") == "on"
            )
        except RuleViolation as violation:
            messages.error(request, violation.text())
        else:
            return redirect("invoices:export_job", uid=job.uid)
    count = filter_invoices(visible_invoices(actor), **filters).count()
    context = {
        "filters": {name: str(value) for name, value in filters.items()},
        "count": count,
        "document_limit": export_jobs.MAX_DOCUMENT_ROWS,
        "jobs": ExportJob.objects.filter(requested_by=actor.user)[:10],
    }
    return render(request, "invoices/exports/new.html", context)


@login_required
@require_GET
def export_job(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    job = _own_job(request, uid)
    context = {
        "job": job,
        "stalled": export_jobs.is_stalled(job),
        "expired": export_jobs.is_expired(job),
    }
    template = (
        "invoices/exports/_progress.html"
        if request.headers.get("HX-Request")
        else ("invoices/exports/job.html")
    )
    return render(request, template, context)


@login_required
@require_GET
def export_download(request: HttpRequest, uid: uuid.UUID) -> FileResponse:
    job = _own_job(request, uid)
    path = export_jobs.file_of(job) if job.file_name else None
    if job.status != ExportJob.Status.DONE or export_jobs.is_expired(job) or path is None:
        raise Http404
    if not path.exists():
        raise Http404
    stamp = job.created_at.strftime("%Y%m%d-%H%M%S")
    suffix = path.suffix
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"invoices-{stamp}{suffix}",
        content_type="application/zip" if suffix == ".zip" else XLSX,
    )


@login_required
@require_POST
def export_restart(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    job = _own_job(request, uid)
    try:
        export_jobs.do_restart_export(_actor(request), job)
    except RuleViolation as violation:
        messages.error(request, violation.text())
    return redirect("invoices:export_job", uid=job.uid)
