"""`piaotong verify FILE`: check an invoice file (PDF, XML, OFD or QR picture) offline.

The signature is checked against the issuing node's public key from the key registry, or, with
`--key PUBLIC_KEY_FILE`, against that key alone without touching any database. Exit codes:
0 authentic (OK), 1 tampered or signature invalid (TAMPERED), 2 could not be checked (file
unreadable, no signature, unknown key).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from piaotong.documents.keyfile import load_public_key
from piaotong.documents.reading import KeyLookup, ReadResult, read_upload, registry_key
from piaotong.lib import signing
from piaotong.lib.errors import RuleViolation

OK, TAMPERED, UNCHECKED = 0, 1, 2
SHOWN = (
    "number",
    "issue_date",
    "kind",
    "kind_code",
    "seller_name",
    "seller_tax_id",
    "buyer_name",
    "buyer_tax_id",
    "total_amount",
    "total_tax",
    "total_with_tax",
)


class Command(BaseCommand):
    help = "Check an invoice PDF, XML, OFD or QR picture against the issuing node's public key."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the invoice file or QR picture")
        parser.add_argument(
            "--key", help="public key file (PEM, raw, hex or base64); no database is used"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sys.exit(self.verify_file(Path(options["file"]), options.get("key")))

    def verify_file(self, path: Path, key_file: str | None) -> int:
        try:
            lookup = _file_key(Path(key_file)) if key_file else registry_key
            result = read_upload(path.read_bytes(), path.name, keys=lookup)
        except (OSError, ValueError) as error:
            text = error.text() if isinstance(error, RuleViolation) else str(error)
            self.stderr.write(f"UNREADABLE: {text}")
            return UNCHECKED
        self._print_facts(result)
        return self._verdict(result)

    def _print_facts(self, result: ReadResult) -> None:
        self.stdout.write(f"format: {result.format}")
        for name in SHOWN:
            if result.fields.get(name):
                self.stdout.write(f"{name}: {result.fields[name]}")
        if result.key_id:
            self.stdout.write(f"key_id: {result.key_id}")
        if result.payload_hash:
            self.stdout.write(f"payload_hash: {result.payload_hash}")

    def _verdict(self, result: ReadResult) -> int:
        if result.signature_valid is False or result.mismatches:
            named = ", ".join(result.mismatches) or "signature"
            if result.signature_valid is False and result.mismatches:
                named = "signature, " + named
            self.stdout.write(f"TAMPERED: {named}")
            return TAMPERED
        if result.signature_valid is None:
            reason = f"key {result.key_id} is unknown" if result.key_id else "no signature found"
            self.stdout.write(f"UNCHECKED: {reason}")
            return UNCHECKED
        self.stdout.write("OK: signature valid, every shown field matches the signed invoice")
        return OK


def _file_key(path: Path) -> KeyLookup:
    public_key = load_public_key(path.read_bytes())
    key_id = signing.key_id(public_key)
    return lambda wanted: public_key if wanted == key_id else None
