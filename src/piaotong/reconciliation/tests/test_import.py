"""Imports through the actions, on the database: complete or absent, audited, matched."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied

from piaotong.accounts.access import actor_for_user
from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation
from piaotong.reconciliation.actions import (
    IdempotencyConflict,
    ImportOptions,
    do_create_import_job,
    do_match_manually,
    do_run_import,
    do_unmatch,
)
from piaotong.reconciliation.models import ImportIssue, ImportJob, ReconciliationItem
from piaotong.reconciliation.tests.conftest import row_of, write_csv

pytestmark = pytest.mark.django_db


def run(actor: Any, organisation: Any, path: Path, **options: Any) -> ImportJob:
    with path.open("rb") as source:
        job, created = do_create_import_job(
            actor, organisation, source, path.name, ImportOptions(**options)
        )
    assert created
    finished = do_run_import(job.pk)
    assert finished is not None
    return finished


def statuses(job: ImportJob) -> dict[Any, str]:
    return {
        item.row or item.invoice.number: item.status for item in job.items.select_related("invoice")
    }


def test_it_imports_and_reconciles_every_row_with_an_explanation(
    tmp_path, issue, buyer, finance_actor
):
    exact, rounded, typo, unbooked = issue("1000"), issue("2000"), issue("3000"), issue("4000")
    typo_number = typo.number[:-2] + typo.number[-1] + typo.number[-2]
    if typo_number == typo.number:
        typo_number = typo.number[:-1] + str((int(typo.number[-1]) + 1) % 10)
    rows = [
        row_of(exact),
        row_of(rounded, tax=str(rounded.total_tax + Decimal("0.01"))),
        row_of(typo, number=typo_number),
        row_of(exact, number="26112000000000999999", amount="5.00", tax="", total=""),
    ]
    job = run(finance_actor, buyer, write_csv(tmp_path / "books.csv", rows))
    assert job.status == "done" and job.rows_read == 4
    assert statuses(job) == {
        2: "exact",
        3: "suggested",
        4: "suggested",
        5: "missing_on_platform",
        unbooked.number: "missing_in_books",
    }
    assert job.summary == {
        "exact": 1,
        "suggested": 2,
        "missing_on_platform": 1,
        "missing_in_books": 1,
    }
    fuzzy = job.items.get(row=4)
    assert fuzzy.invoice == typo and fuzzy.rule == "fuzzy_number"
    assert fuzzy.diffs == [["number", typo_number, typo.number, ""]]
    entry = AuditEntry.objects.filter(action="reconciliation.imported").get()
    assert entry.details["rows"] == 4 and entry.organisation_id == buyer.pk
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
    assert not list(tmp_path.glob("*.upload"))


def test_a_refused_import_leaves_nothing_but_its_error_report(
    tmp_path, issue, buyer, finance_actor
):
    good, other = issue(), issue("2000")
    rows = [row_of(good), row_of(other, number=other.number, amount="一千")]
    job = run(finance_actor, buyer, write_csv(tmp_path / "bad.csv", rows))
    assert job.status == "failed" and job.error_count == 1
    [problem] = ImportIssue.objects.filter(job=job)
    assert (problem.row, problem.code, problem.value) == (3, "invalid_amount", "一千")
    assert problem.location() in ("Row 3, 金额 (E)", "第 3 行，金额 (E)")
    assert ReconciliationItem.objects.count() == 0
    assert AuditEntry.objects.filter(action="reconciliation.import_refused").count() == 1
    assert job.stored_path == ""


def test_only_those_who_reconcile_may_import(tmp_path, issue, buyer, buyer_auditor, stranger):
    path = write_csv(tmp_path / "b.csv", [row_of(issue())])
    for user in (buyer_auditor, stranger):
        with pytest.raises(PermissionDenied), path.open("rb") as source:
            do_create_import_job(actor_for_user(user), buyer, source, "b.csv", ImportOptions())
    assert ImportJob.objects.count() == 0


def test_it_refuses_options_out_of_range_before_storing_anything(tmp_path, buyer, finance_actor):
    with pytest.raises(RuleViolation) as refused:
        do_create_import_job(
            finance_actor, buyer, io.BytesIO(b"x"), "b.csv", ImportOptions(date_window_days=400)
        )
    assert refused.value.code == "date_window_range"
    assert ImportJob.objects.count() == 0


def test_an_idempotency_key_returns_the_first_job_for_the_same_file(
    tmp_path, issue, buyer, finance_actor
):
    content = write_csv(tmp_path / "b.csv", [row_of(issue())]).read_bytes()
    first, created = do_create_import_job(
        finance_actor, buyer, io.BytesIO(content), "b.csv", ImportOptions(), idempotency_key="k1"
    )
    again, created_again = do_create_import_job(
        finance_actor, buyer, io.BytesIO(content), "b.csv", ImportOptions(), idempotency_key="k1"
    )
    assert created and not created_again and again.pk == first.pk
    with pytest.raises(IdempotencyConflict):
        do_create_import_job(
            finance_actor,
            buyer,
            io.BytesIO(content + b"\n"),
            "b.csv",
            ImportOptions(),
            idempotency_key="k1",
        )
    assert ImportJob.objects.count() == 1


def test_a_stalled_job_is_resumed_from_its_file(tmp_path, issue, buyer, finance_actor):
    from django.utils import timezone

    from piaotong.reconciliation.actions import do_resume_stale_import

    path = write_csv(tmp_path / "b.csv", [row_of(issue())])
    with path.open("rb") as source:
        job, _ = do_create_import_job(finance_actor, buyer, source, "b.csv", ImportOptions())
    ImportJob.objects.filter(pk=job.pk).update(status="reading", heartbeat_at=timezone.now())
    job.refresh_from_db()
    assert not do_resume_stale_import(job)  # still beating
    ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=6))
    assert do_resume_stale_import(job)
    assert do_run_import(job.pk).status == "done"


def test_it_pairs_and_unpairs_by_hand_with_audit_rows(tmp_path, issue, buyer, finance_actor):
    invoice = issue("1000")
    job = run(
        finance_actor,
        buyer,
        write_csv(
            tmp_path / "b.csv",
            [row_of(invoice, number="26112000000000999999", total="9.00", amount="", tax="")],
        ),
    )
    row = job.items.get(row=2)
    assert row.status == "missing_on_platform"
    paired = do_match_manually(finance_actor, row, invoice)
    assert (paired.status, paired.rule, paired.invoice) == ("manual", "manual", invoice)
    assert [d[0] for d in paired.diffs] == ["number", "total"]
    assert job.items.count() == 1  # the invoice's own "missing in books" item is gone
    job.refresh_from_db()
    assert job.summary == {"manual": 1}
    with pytest.raises(RuleViolation) as twice:
        do_match_manually(finance_actor, paired, invoice)
    assert twice.value.code == "row_already_paired"
    do_unmatch(finance_actor, paired)
    assert statuses(job) == {2: "missing_on_platform", invoice.number: "missing_in_books"}
    actions = list(
        AuditEntry.objects.filter(action__startswith="reconciliation.").values_list(
            "action", flat=True
        )
    )
    assert actions[-2:] == ["reconciliation.matched_manually", "reconciliation.unmatched"]


def test_a_viewer_cannot_pair(tmp_path, issue, buyer, finance_actor, buyer_auditor):
    invoice = issue()
    job = run(
        finance_actor,
        buyer,
        write_csv(tmp_path / "b.csv", [row_of(invoice, number="26112000000000999999")]),
    )
    with pytest.raises(PermissionDenied):
        do_match_manually(actor_for_user(buyer_auditor), job.items.get(row=2), invoice)


def test_it_stores_every_item_when_there_are_more_than_one_batch(
    tmp_path, issue, buyer, finance_actor
):
    """Items are written STORE_BATCH at a time inside the one transaction: none is lost at the
    edges of a batch, and each row keeps its own facts."""
    from piaotong.reconciliation.actions import STORE_BATCH

    booked, unbooked = issue("1000"), issue("2000")
    extra = STORE_BATCH + 7
    rows = [row_of(booked)] + [
        row_of(booked, number=f"26112{900_000_000_000_000 + n:015d}", amount=f"{n}.01")
        for n in range(extra)
    ]
    job = run(finance_actor, buyer, write_csv(tmp_path / "many.csv", rows))
    assert job.status == "done" and job.rows_read == extra + 1
    assert job.items.count() == extra + 2
    assert job.summary == {"exact": 1, "missing_on_platform": extra, "missing_in_books": 1}
    last = job.items.get(row=extra + 2)
    assert last.amount == Decimal(f"{extra - 1}.01") and last.invoice is None
    assert job.items.get(invoice=unbooked).status == "missing_in_books"
