"""`piaotong restore PATH`: verify an archive, then restore it into this node (piaotong.backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong import backup


class Command(BaseCommand):
    help = (
        "Restore a backup archive (数据恢复) into an empty node: the checksum and every chunk "
        "are verified before anything is changed; afterwards the ledger is re-verified and "
        "compared with the archive's manifest. Stop the server first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, metavar="PATH")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace a node that holds data, set aside a different signing key of the same "
            "name, or restore an archive of another node id or region",
        )
        parser.add_argument(
            "--unencrypted",
            action="store_true",
            help="Accept an archive written with `backup --unencrypted` (nothing authenticates "
            "it: use only archives you know to be yours)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            key = backup.key_from_env()
            report = backup.restore_backup(
                options["archive"],
                key,
                force=options["force"],
                progress=self.stdout.write,
                allow_unencrypted=options["unencrypted"],
            )
        except backup.BackupError as exc:
            raise CommandError(f"{exc}. Nothing was restored.") from exc
        self._report(report)

    def _report(self, report: backup.RestoreReport) -> None:
        for name in report.keys_restored:
            self.stdout.write(f"Signing key restored: {name}")
        for path in report.keys_set_aside:
            self.stdout.write(f"A different key was set aside as {path}")
        if report.media_restored is not None:
            self.stdout.write(f"Media files restored: {report.media_restored}")
        else:
            self.stdout.write("The archive (format version 1) holds no media: MEDIA_ROOT unchanged")
        if report.media_set_aside:
            self.stdout.write(
                f"The previous media directory was set aside as {report.media_set_aside}"
            )
        if report.migrated:
            self.stdout.write(f"Migrated after restore: {', '.join(report.migrated)}")
        self.stdout.write(f"Audit entry #{report.audit_seq} records this restore.")
        if report.problems:
            for problem in report.problems:
                self.stderr.write(f"DIFFERS {problem}")
            raise CommandError(
                f"the database was restored, but {len(report.problems)} check(s) against the "
                "archive's manifest failed (listed above)"
            )
        facts = backup.DatabaseFacts.from_manifest(report.manifest)
        self.stdout.write(
            self.style.SUCCESS(f"Restored and verified: {facts.summary()}; every chain recomputes.")
        )
