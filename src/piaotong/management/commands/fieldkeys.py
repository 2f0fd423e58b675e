"""`piaotong fieldkeys generate|rotate`: the keys of field encryption at rest (piaotong.fields)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from piaotong.fields import KEYS_SETTING, encrypted_columns, field_keyring, reencrypt_column
from piaotong.lib.fieldcrypto import FieldCryptoError, generate_key_line


class Command(BaseCommand):
    help = (
        "Field encryption keys (字段密钥): `generate` prints a new key line for "
        f"{KEYS_SETTING}; `rotate` re-encrypts every encrypted column under the current key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        generate = sub.add_parser("generate", help="Print a new key as <key id>:<base64 key>")
        generate.add_argument(
            "--key-id", help="Key id (default: k<UTC date>, e.g. k20250601)", default=None
        )
        rotate = sub.add_parser(
            "rotate", help="Re-encrypt every value not yet under the current (first) key"
        )
        rotate.add_argument("--batch", type=int, default=500, help="Rows per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["subcommand"] == "generate":
                self._generate(options["key_id"])
            else:
                self._rotate(options["batch"])
        except FieldCryptoError as exc:
            raise CommandError(str(exc)) from exc

    def _generate(self, key_id: str | None) -> None:
        key_id = key_id or f"k{datetime.now(UTC):%Y%m%d}"
        self.stdout.write(generate_key_line(key_id))
        self.stderr.write(
            _(
                "Put this key first in %(setting)s to make it current, keep the older keys "
                "after it, then run `piaotong fieldkeys rotate`. Store a copy apart from the "
                "backups, like the backup key."
            )
            % {"setting": KEYS_SETTING}
        )

    def _rotate(self, batch: int) -> None:
        if batch < 1:
            raise CommandError(_("--batch must be at least 1"))
        keyring = field_keyring()
        self.stdout.write(_("Re-encrypting under key %(key_id)s.") % {"key_id": keyring.current_id})
        counts: dict[str, int] = {}
        for model, column in encrypted_columns():
            label = f"{model._meta.label}.{column.column}"

            def report(scanned: int, changed: int, label: str = label) -> None:
                self.stdout.write(
                    _("  %(column)s: %(scanned)s rows read, %(changed)s re-encrypted")
                    % {"column": label, "scanned": scanned, "changed": changed}
                )

            changed = reencrypt_column(column, keyring, batch=batch, progress=report)
            counts[model._meta.label] = counts.get(model._meta.label, 0) + changed
        for label, changed in counts.items():
            self.stdout.write(
                _("%(model)s: %(count)s values re-encrypted") % {"model": label, "count": changed}
            )
        self.stdout.write(
            self.style.SUCCESS(
                _(
                    "Done: every encrypted value is under key %(key_id)s. Older keys may be "
                    "removed from %(setting)s once no backup you may restore still needs them."
                )
                % {"key_id": keyring.current_id, "setting": KEYS_SETTING}
            )
        )
