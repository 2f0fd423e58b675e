"""`piaotong serve`: migrate, collect static files, and run gunicorn (not runserver)."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from piaotong.ledger.keys import signing_key


class Command(BaseCommand):
    help = "Run the platform with a production-grade HTTP server (gunicorn)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=os.environ.get("PIAOTONG_BIND", "127.0.0.1:8000"))
        parser.add_argument(
            "--workers", type=int, default=int(os.environ.get("PIAOTONG_WORKERS", "2"))
        )
        parser.add_argument(
            "--threads", type=int, default=int(os.environ.get("PIAOTONG_THREADS", "4"))
        )
        parser.add_argument(
            "--no-migrate", action="store_true", help="Do not apply migrations first."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        # The node's signing key exists, and is registered, before the first invoice is issued.
        with transaction.atomic():
            key = signing_key()
        self.stdout.write(f"Signing key {key.algorithm} {key.key_id}")
        self.stdout.write(f"Piaotong listening on http://{options['bind']}/ (Ctrl-C to stop)")
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "piaotong.wsgi:application",
            "--bind",
            options["bind"],
            "--workers",
            str(options["workers"]),
            "--threads",
            str(options["threads"]),
            "--worker-class",
            "gthread",
            "--access-logfile",
            "-",
            "--graceful-timeout",
            "20",
        ]
        sys.stdout.flush()
        os.execv(sys.executable, argv)
