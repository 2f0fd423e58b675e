"""The web path runs imports in a background thread; the CLI runs them in its own process."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command

from piaotong.reconciliation.actions import ImportOptions, do_create_import_job
from piaotong.reconciliation.models import ImportJob
from piaotong.reconciliation.runner import launch
from piaotong.reconciliation.tests.conftest import row_of, write_csv


@pytest.mark.django_db(transaction=True)
def test_a_web_upload_is_imported_by_a_background_thread(tmp_path, issue, buyer, finance_actor):
    path = write_csv(tmp_path / "b.csv", [row_of(issue())])
    with path.open("rb") as source:
        job, _ = do_create_import_job(finance_actor, buyer, source, "b.csv", ImportOptions())
    launch(job.pk)
    # Wait for the thread, not by polling the job: the test database is SQLite's in-memory
    # shared cache, where a read of the table at the wrong moment makes the runner's write
    # fail at once with "database table is locked" (no busy timeout applies there; a file
    # database in WAL mode, as in production, lets readers and the writer proceed).
    runners = [t for t in threading.enumerate() if t.name == f"reconcile-import-{job.pk}"]
    for runner in runners:
        runner.join(timeout=30)
    assert not any(runner.is_alive() for runner in runners)
    job.refresh_from_db()
    assert job.status == "done" and job.summary == {"exact": 1}


@pytest.mark.django_db
def test_the_command_imports_a_file_for_an_organisation(tmp_path, issue, buyer, capsys):
    path = write_csv(tmp_path / "b.csv", [row_of(issue())], encoding="gbk")
    call_command("reconcile-import", str(path), "--org", buyer.tax_id)
    out = capsys.readouterr().out
    assert "1 rows imported and reconciled: exact=1" in out
    assert ImportJob.objects.get().created_by_label == "system"
