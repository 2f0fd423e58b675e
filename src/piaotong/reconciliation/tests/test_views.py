"""The pages and the API, as the buyer's finance manager, its auditor, and a stranger."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from openpyxl import load_workbook

from piaotong.deduction.models import DeductionSelection
from piaotong.ledger.models import AuditEntry
from piaotong.reconciliation.models import ImportJob
from piaotong.reconciliation.tests.conftest import row_of, write_csv

pytestmark = pytest.mark.django_db


def upload(client: Any, path: Path, **fields: Any) -> Any:
    with path.open("rb") as handle:
        return client.post(
            reverse("reconciliation:index"),
            {
                "kind": "purchase_records",
                "date_window_days": 10,
                "per_line_tolerance": "0.01",
                "per_invoice_tolerance": "1.27",
                "file": handle,
                **fields,
            },
        )


@pytest.fixture
def done_job(
    client, tmp_path, issue, buyer, finance, inline_runs, django_capture_on_commit_callbacks
):
    invoice = issue()
    client.force_login(finance)
    # Row 3's number is unknown; its seller name would be a formula in a careless export.
    rows = [
        row_of(invoice),
        row_of(issue("7000"), number="26112000000000999999", name="=HYPERLINK(1)"),
    ]
    path = write_csv(tmp_path / "b.csv", rows)
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, path, organisation=buyer.pk)
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "reconciliation:job", args=[job.uid]
    )
    return job


def test_it_shows_the_link_only_to_those_who_reconcile(client, finance, buyer_auditor):
    client.force_login(finance)
    assert (
        reverse("reconciliation:index")
        in client.get(reverse("invoices:dashboard")).content.decode()
    )
    client.force_login(buyer_auditor)
    assert (
        reverse("reconciliation:index")
        not in client.get(reverse("invoices:dashboard")).content.decode()
    )


def test_a_finance_manager_uploads_and_sees_every_row_explained(client, done_job):
    job = ImportJob.objects.get()
    assert job.status == "done"
    page = client.get(reverse("reconciliation:job", args=[job.uid]), HTTP_ACCEPT_LANGUAGE="en")
    text = page.content.decode()
    assert page.status_code == 200
    assert "完全匹配" in text and "规则 1，完全一致" in text  # status and its explanation
    assert "平台缺失" in text and "账上缺失" in text
    assert text.count("<tr>") >= 1 + 3
    filtered = client.get(reverse("reconciliation:job", args=[job.uid]), {"status": "exact"})
    assert filtered.context["page"].paginator.count == 1


def test_the_progress_panel_reloads_the_page_when_done(client, done_job):
    response = client.get(
        reverse("reconciliation:progress", args=[done_job.uid]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and response["HX-Refresh"] == "true"


def test_a_stranger_gets_404_for_the_buyers_import(client, done_job, stranger):
    client.force_login(stranger)
    for name in ("job", "progress", "export"):
        assert client.get(reverse(f"reconciliation:{name}", args=[done_job.uid])).status_code == 404
    item = done_job.items.first()
    url = reverse("reconciliation:unmatch", args=[done_job.uid, item.pk])
    assert client.post(url).status_code == 404
    assert client.get(f"/api/v1/reconciliation/imports/{done_job.uid}").status_code == 404


def test_an_auditor_reads_but_cannot_pair(client, done_job, buyer_auditor):
    client.force_login(buyer_auditor)
    assert client.get(reverse("reconciliation:job", args=[done_job.uid])).status_code == 200
    item = done_job.items.get(row=2)
    response = client.post(reverse("reconciliation:unmatch", args=[done_job.uid, item.pk]))
    assert response.status_code == 403
    assert done_job.items.get(row=2).status == "exact"


def test_the_export_has_both_sides_and_safe_cells(client, done_job):
    response = client.get(reverse("reconciliation:export", args=[done_job.uid]))
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)
    rows = list(book.active.iter_rows(values_only=True))
    assert len(rows) == 1 + 3
    assert rows[1][2] == 2 and rows[1][3] == rows[1][4]
    assert all(isinstance(r[17], str) and r[17] and r[18] for r in rows[1:])
    assert rows[2][9] == "'=HYPERLINK(1)"
    assert AuditEntry.objects.filter(action="reconciliation.exported").count() == 1


def test_it_selects_the_exactly_matched_invoices_for_deduction(client, done_job):
    from django.utils import timezone

    period = timezone.localdate().strftime("%Y%m")
    response = client.post(
        reverse("reconciliation:deduct", args=[done_job.uid]), {"period": period}
    )
    assert response.status_code == 302
    exact = done_job.items.get(status="exact").invoice
    assert list(DeductionSelection.objects.values_list("invoice_id", flat=True)) == [exact.pk]


def test_the_api_uploads_with_an_idempotency_key_and_lists_results(
    client, tmp_path, issue, finance, inline_runs, django_capture_on_commit_callbacks
):
    client.force_login(finance)
    path = write_csv(tmp_path / "b.csv", [row_of(issue())])

    def post() -> Any:
        with path.open("rb") as handle:
            return client.post(
                "/api/v1/reconciliation/imports",
                {"file": handle},
                headers={"Idempotency-Key": "u-1"},
            )

    with django_capture_on_commit_callbacks(execute=True):
        first = post()
    again = post()
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    uid = first.json()["id"]
    assert client.get(f"/api/v1/reconciliation/imports/{uid}").json()["status"] == "done"
    items = client.get(f"/api/v1/reconciliation/imports/{uid}/items").json()
    assert items["count"] == 1 and items["results"][0]["status"] == "exact"
    assert items["results"][0]["explanation_en"].startswith("Rule 1")
    unpaired = client.post(
        f"/api/v1/reconciliation/imports/{uid}/rows/2/unmatch", headers={"Idempotency-Key": "un-1"}
    )
    assert unpaired.status_code == 200 and unpaired.json()["status"] == "missing_on_platform"
    number = items["results"][0]["invoice"]["number"]
    paired = client.post(
        f"/api/v1/reconciliation/imports/{uid}/rows/2/match",
        {"invoice_number": number},
        content_type="application/json",
    )
    assert paired.status_code == 200 and paired.json()["status"] == "manual"
    refused = client.post(
        f"/api/v1/reconciliation/imports/{uid}/rows/2/match",
        {"invoice_number": number},
        content_type="application/json",
    )
    assert (
        refused.status_code == 422 and refused.json()["detail"][0]["code"] == "row_already_paired"
    )
