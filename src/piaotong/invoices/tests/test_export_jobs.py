"""Export jobs: queued by a request, built in the background with progress, downloaded only by
the person who asked, audited when done, restartable when stalled or failed."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from piaotong.accounts.access import actor_for_user
from piaotong.invoices import export_jobs
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import ExportJob
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(org_a: Any, org_b: Any, clerk: Any) -> list[Any]:
    from piaotong.testing import draft

    actor = actor_for_user(clerk)
    return [do_issue_new_invoice(actor, org_a, draft(org_b)) for _ in range(3)]


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    client.cookies["django_language"] = "en"
    return client


def test_it_builds_the_workbook_with_progress_and_audits_it(issued, clerk):
    job = export_jobs.do_request_export(actor_for_user(clerk), {}, False, start=False)
    assert (job.status, job.rows_total, job.rows_done) == ("queued", 3, 0)
    assert AuditEntry.objects.filter(action="invoice.export_requested").count() == 1

    done = export_jobs.run_export(job.pk)

    assert (done.status, done.rows_done, done.percent) == ("done", 3, 100)
    workbook = load_workbook(export_jobs.file_of(done), read_only=True)
    numbers = {row[0] for row in workbook["发票"].iter_rows(min_row=2, values_only=True)}
    assert numbers == {invoice.number for invoice in issued}
    assert AuditEntry.objects.filter(action="invoice.exported").count() == 1


def test_it_zips_the_pdf_of_every_invoice(issued, clerk, media_root):
    job = export_jobs.do_request_export(actor_for_user(clerk), {}, True, start=False)
    done = export_jobs.run_export(job.pk)
    with zipfile.ZipFile(export_jobs.file_of(done)) as archive:
        names = set(archive.namelist())
        assert names == {"invoices.xlsx"} | {f"pdf/{i.number}.pdf" for i in issued}
        assert archive.read(f"pdf/{issued[0].number}.pdf").startswith(b"%PDF")
        assert load_workbook(io.BytesIO(archive.read("invoices.xlsx")), read_only=True)


def test_it_lets_only_the_requester_see_and_download(issued, clerk, second_clerk):
    job = export_jobs.run_export(
        export_jobs.do_request_export(actor_for_user(clerk), {}, False, start=False).pk
    )
    own = _client(clerk)
    assert own.get(reverse("invoices:export_job", args=[job.uid])).status_code == 200
    response = own.get(reverse("invoices:export_download", args=[job.uid]))
    assert response.status_code == 200 and b"".join(response.streaming_content)[:2] == b"PK"
    other = _client(second_clerk)
    assert other.get(reverse("invoices:export_job", args=[job.uid])).status_code == 404
    assert other.get(reverse("invoices:export_download", args=[job.uid])).status_code == 404


def test_it_shows_progress_to_htmx_and_a_stalled_job_can_start_again(issued, clerk):
    job = export_jobs.do_request_export(actor_for_user(clerk), {}, False, start=False)
    client = _client(clerk)
    partial = client.get(
        reverse("invoices:export_job", args=[job.uid]), headers={"HX-Request": "true"}
    ).text
    assert 'hx-trigger="every 1s"' in partial and "0 of 3 invoices" in partial
    ExportJob.objects.filter(pk=job.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=6)
    )
    page = client.get(reverse("invoices:export_job", args=[job.uid])).text
    assert "no progress for five minutes" in page and "every 1s" not in page
    client.post(reverse("invoices:export_restart", args=[job.uid]))
    job.refresh_from_db()
    assert job.status in {"queued", "running", "done"}


def test_it_records_a_failure_instead_of_losing_it(issued, clerk, monkeypatch):
    job = export_jobs.do_request_export(actor_for_user(clerk), {}, False, start=False)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(export_jobs, "write_invoices_xlsx", broken)
    failed = export_jobs.run_export(job.pk)
    assert failed.status == "failed" and "disk full" in failed.error
    assert not export_jobs.file_of(failed).with_suffix(".xlsx.part").exists()
    assert not AuditEntry.objects.filter(action="invoice.exported").exists()


def test_it_refuses_a_documents_zip_that_is_too_large(issued, clerk, monkeypatch):
    monkeypatch.setattr(export_jobs, "MAX_DOCUMENT_ROWS", 2)
    with pytest.raises(RuleViolation) as refused:
        export_jobs.do_request_export(actor_for_user(clerk), {}, True, start=False)
    assert refused.value.code == "too_many_documents"
    assert not ExportJob.objects.exists()


def test_it_starts_from_the_list_page_with_its_filters(issued, clerk):
    client = _client(clerk)
    page = client.get(reverse("invoices:export_new"), {"status": "issued"}).text
    assert "3 invoices match" in page and 'name="status" value="issued"' in page
    response = client.post(reverse("invoices:export_new"), {"status": "issued"})
    job = ExportJob.objects.get()
    assert response.status_code == 302 and job.filters == {"status": "issued"}


def test_it_removes_files_past_their_time(issued, clerk):
    job = export_jobs.run_export(
        export_jobs.do_request_export(actor_for_user(clerk), {}, False, start=False).pk
    )
    path = export_jobs.file_of(job)
    ExportJob.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    assert export_jobs.delete_expired() == 1
    assert not path.exists()
    response = _client(clerk).get(reverse("invoices:export_download", args=[job.uid]))
    assert response.status_code == 404


def test_it_offers_the_organisation_export_in_the_user_center(clerk):
    page = _client(clerk).get(reverse("accounts:profile")).text
    assert reverse("invoices:export_new") in page
