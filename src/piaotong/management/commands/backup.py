"""`piaotong backup`: write one encrypted, checksummed archive of this node (see piaotong.backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from piaotong import backup


class Command(BaseCommand):
    help = (
        "Back up this node (数据备份): a consistent database snapshot, the signing keys and a "
        "manifest in one archive, encrypted with PIAOTONG_BACKUP_KEY, SHA-256 in PATH.sha256."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output",
            type=Path,
            metavar="PATH",
            help="Archive file or directory (default: var/backups/piaotong-<node>-<UTC time>.ptbk)",
        )
        parser.add_argument(
            "--unencrypted",
            action="store_true",
            help="Write the archive without encryption (it then holds the private signing key "
            "in clear)",
        )
        parser.add_argument(
            "--generate-key",
            action="store_true",
            help=f"Print a new backup key for {backup.KEY_ENV} and exit",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["generate_key"]:
            self._generate_key()
            return
        key = self._key(unencrypted=options["unencrypted"])
        try:
            result = backup.create_backup(options["output"], key, progress=self.stdout.write)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Backup written: {result.path} ({backup.human_size(result.size)}), "
                f"SHA-256 in {backup.checksum_path(result.path).name}"
            )
        )
        if key is not None:
            self.stdout.write(
                f"Restoring it needs the backup key with id {result.key_id}: keep that key "
                "apart from the archive."
            )

    def _generate_key(self) -> None:
        key = backup.generate_key()
        self.stdout.write(key)
        key_id = backup.key_id(backup.parse_key(key)).hex()
        self.stderr.write(
            f"Key id {key_id}. Set {backup.KEY_ENV} to this key and store a copy apart from "
            "the backups: without it they cannot be restored."
        )

    def _key(self, *, unencrypted: bool) -> bytes | None:
        """The backup key; refusing to go on without one unless --unencrypted says so."""
        if unencrypted:
            self.stderr.write(
                self.style.WARNING(
                    "WARNING: --unencrypted: anyone who reads the archive can read every "
                    "invoice and sign as this node. Keep it somewhere only you can read."
                )
            )
            return None
        try:
            key = backup.key_from_env()
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        if key is None:
            raise CommandError(
                f"{backup.KEY_ENV} is not set: archives are encrypted with it. Generate one with "
                f"`piaotong backup --generate-key`, set {backup.KEY_ENV}, and store the key apart "
                "from the backups; or pass --unencrypted."
            )
        return key
