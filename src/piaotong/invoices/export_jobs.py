"""Export jobs (导出任务): large exports built in the background with visible progress.

The direct download (`views.export_invoices`) builds the workbook while the browser waits; fine
for a few thousand invoices. An export job runs the same writer in a background thread after
the request that asked for it has committed, records progress on its row (rows done of rows
total, a heartbeat), and can add the PDF of every invoice into one zip archive
(`invoices.xlsx` plus `pdf/<number>.pdf`). The file lives under `var/exports/` for
`EXPORT_TTL`; only its requester may download it. The export is audited when it completes,
like the direct download.

A process that dies mid-export leaves a job whose heartbeat stops: after `STALL_AFTER` the page
says so and offers to run it again, which starts over from the same filters.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.permissions import Action
from piaotong.invoices.access import visible_invoices
from piaotong.invoices.actions import do_record_invoice_export
from piaotong.invoices.export import write_invoices_xlsx
from piaotong.invoices.models import ExportJob
from piaotong.invoices.queries import filter_invoices
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolation

logger = logging.getLogger(__name__)

EXPORT_TTL = timedelta(hours=24)
STALL_AFTER = timedelta(minutes=5)
# Documents are rendered if missing: a zip of PDFs is limited so one request cannot occupy a
# renderer for hours; bigger selections are split by date range.
MAX_DOCUMENT_ROWS = 20_000
HEARTBEAT_EVERY = 200  # rows between progress writes


def export_dir() -> Path:
    path = Path(settings.VAR_DIR) / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_of(job: ExportJob) -> Path:
    return export_dir() / job.file_name


def is_stalled(job: ExportJob, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    if job.status not in {ExportJob.Status.QUEUED, ExportJob.Status.RUNNING}:
        return False
    last: datetime = job.heartbeat_at or job.created_at
    return now - last > STALL_AFTER


def is_expired(job: ExportJob, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return job.status == ExportJob.Status.DONE and bool(
        job.finished_at and now - job.finished_at > EXPORT_TTL
    )


def do_request_export(
    actor: Actor, filters: dict[str, Any], with_documents: bool, *, start: bool = True
) -> ExportJob:
    """Queue an export of the invoices the actor may view, filtered like the list."""
    if actor.user is None:
        raise RuleViolation(
            "requested_by", "person_required", _("Export jobs are requested by a person.")
        )
    organisation_ids = actor.organisation_ids(Action.VIEW_INVOICES)
    invoices = filter_invoices(visible_invoices(actor), **filters)
    total = invoices.count()
    if with_documents and total > MAX_DOCUMENT_ROWS:
        raise RuleViolation(
            "with_documents",
            "too_many_documents",
            _(
                "%(count)s invoices match; a zip with documents holds at most %(limit)s. Narrow the dates, or export the list without documents."
            ),
            {"count": total, "limit": MAX_DOCUMENT_ROWS},
        )
    with transaction.atomic():
        job = ExportJob.objects.create(
            requested_by=actor.user,
            organisation_ids=organisation_ids,
            filters={name: str(value) for name, value in filters.items()},
            with_documents=with_documents,
            rows_total=total,
        )
        record_audit(
            actor,
            "invoice.export_requested",
            f"export:{job.uid}",
            organisation_ids[0] if len(organisation_ids) == 1 else None,
            {"filters": job.filters, "rows": total, "with_documents": with_documents},
        )
        if start:
            transaction.on_commit(lambda: start_in_background(job.pk))
    delete_expired()  # files past their 24 hours go when the next export is asked for
    return job


def do_restart_export(actor: Actor, job: ExportJob) -> ExportJob:
    """Start a stalled or failed job again, from the beginning."""
    with transaction.atomic():
        job = ExportJob.objects.select_for_update().get(pk=job.pk)
        if not (job.status == ExportJob.Status.FAILED or is_stalled(job)):
            raise RuleViolation(
                "status",
                "not_restartable",
                _("Only a failed or stalled export can be started again."),
            )
        job.status, job.rows_done, job.error = ExportJob.Status.QUEUED, 0, ""
        job.heartbeat_at = timezone.now()
        job.save(update_fields=["status", "rows_done", "error", "heartbeat_at"])
        record_audit(actor, "invoice.export_restarted", f"export:{job.uid}", None, {})
        transaction.on_commit(lambda: start_in_background(job.pk))
    return job


def start_in_background(job_id: int) -> threading.Thread:
    thread = threading.Thread(target=_run_closing, args=(job_id,), daemon=True, name="export")
    thread.start()
    return thread


def _run_closing(job_id: int) -> None:
    try:
        run_export(job_id)
    finally:
        close_old_connections()


def _progress(job: ExportJob, done: int) -> None:
    job.rows_done = min(done, job.rows_total or done)
    job.heartbeat_at = timezone.now()
    ExportJob.objects.filter(pk=job.pk).update(
        rows_done=job.rows_done, heartbeat_at=job.heartbeat_at
    )


def run_export(job_id: int) -> ExportJob:
    """Build the file of a queued job (in this thread); failures are recorded on the job."""
    job = ExportJob.objects.select_related("requested_by").get(pk=job_id)
    job.status, job.heartbeat_at = ExportJob.Status.RUNNING, timezone.now()
    job.save(update_fields=["status", "heartbeat_at"])
    actor = actor_for_user(job.requested_by)
    filters = {name: value for name, value in job.filters.items()}
    invoices = filter_invoices(visible_invoices(actor), **_typed(filters))
    suffix = "zip" if job.with_documents else "xlsx"
    job.file_name = f"{job.uid}.{suffix}"
    target, partial = file_of(job), file_of(job).with_suffix(f".{suffix}.part")
    try:
        if job.with_documents:
            rows = _write_zip(job, invoices, partial)
        else:
            with partial.open("wb") as output:
                rows = write_invoices_xlsx(invoices, output, lambda n: _progress(job, n))
        partial.replace(target)
    except Exception as error:
        logger.exception("export %s failed", job.uid)
        partial.unlink(missing_ok=True)
        job.status, job.error = ExportJob.Status.FAILED, f"{type(error).__name__}: {error}"[:500]
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at", "file_name"])
        return job
    job.status, job.rows_done, job.size = ExportJob.Status.DONE, rows, target.stat().st_size
    job.finished_at = job.heartbeat_at = timezone.now()
    job.save(
        update_fields=["status", "rows_done", "size", "finished_at", "heartbeat_at", "file_name"]
    )
    do_record_invoice_export(actor, job.organisation_ids, job.filters, rows)
    return job


def _typed(filters: dict[str, str]) -> dict[str, Any]:
    """The list filters back from their stored text (the list form validates them again)."""
    from piaotong.invoices.forms import ListFilterForm

    return ListFilterForm(filters).filters()


def _write_zip(job: ExportJob, invoices: Any, path: Path) -> int:
    from piaotong.documents.actions import get_document
    from piaotong.documents.storage import read_bytes

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        with tempfile.TemporaryFile(dir=export_dir()) as workbook:
            rows = write_invoices_xlsx(invoices, workbook)
            workbook.seek(0)
            with archive.open("invoices.xlsx", "w", force_zip64=True) as member:
                shutil.copyfileobj(workbook, member)
        done = 0
        for invoice in invoices.filter(number__isnull=False).order_by("issue_date", "number"):
            document = get_document(invoice, "pdf")
            archive.writestr(f"pdf/{invoice.number}.pdf", read_bytes(document), zipfile.ZIP_STORED)
            done += 1
            if done % HEARTBEAT_EVERY == 0:
                _progress(job, done)
        _progress(job, done)
    return rows


def delete_expired(now: Any = None) -> int:
    """Remove the files of exports past their time; returns how many were removed."""
    now = now or timezone.now()
    removed = 0
    for job in ExportJob.objects.filter(
        status=ExportJob.Status.DONE, finished_at__lt=now - EXPORT_TTL
    ).exclude(file_name=""):
        file_of(job).unlink(missing_ok=True)
        ExportJob.objects.filter(pk=job.pk).update(file_name="")
        removed += 1
    return removed
