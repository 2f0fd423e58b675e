"""Where imports run: a background thread of the web process, or inline (CLI, tests).

A web upload returns as soon as the file is stored; the job is started after the commit that
created it, in a daemon thread with its own database connection. If that process dies, the
job's heartbeat stops and the job page (or `piaotong reconcile-import --resume`) queues it
again from its stored file: nothing of it was stored before its final transaction.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from piaotong.reconciliation.actions import do_resume_stale_import, do_run_import
from piaotong.reconciliation.models import ImportJob


def start_import(job: ImportJob) -> None:
    """Run the job once the current transaction (if any) has committed."""
    transaction.on_commit(lambda: launch(job.pk))


def launch(job_id: int) -> None:
    if getattr(settings, "PIAOTONG_RECONCILE_INLINE", False):
        do_run_import(job_id)
        return
    thread = threading.Thread(
        target=_in_thread, args=(job_id,), name=f"reconcile-import-{job_id}", daemon=True
    )
    thread.start()


def _in_thread(job_id: int) -> None:
    close_old_connections()
    try:
        do_run_import(job_id)
    finally:
        connection.close()


def resume_if_stale(job: ImportJob) -> bool:
    """Restart a job whose runner stopped; True if this call restarted it."""
    if job.is_running and do_resume_stale_import(job):
        launch(job.pk)
        return True
    return False
