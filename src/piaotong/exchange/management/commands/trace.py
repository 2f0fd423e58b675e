"""`piaotong trace INPUT`: why an invoice cannot be found here (the operator's view).

INPUT is a 20-digit number, "CODE NUMBER" of a legacy invoice, an official QR text, or the path
of a picture of the QR code (or an invoice file). The operator sees every fact this node has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandParser

from piaotong.exchange.trace_facts import trace_request
from piaotong.exchange.trace_remote import ask_nodes


class Command(BaseCommand):
    help = "Explain why an invoice cannot be found at this node (the not-found trace)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("input", help="number, 'CODE NUMBER', QR text, or a picture's path")
        parser.add_argument("--code", default="", help="the legacy invoice code (发票代码)")
        parser.add_argument("--date", default="", help="the issue date typed, e.g. 2026-01-05")
        parser.add_argument("--amount", default="", help="the amount typed when checking")
        parser.add_argument("--json", action="store_true", help="print the verdict as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        given: str = options["input"]
        path = Path(given)
        upload = None
        if len(given) < 256 and path.suffix and path.is_file():
            upload = (path.read_bytes(), path.name)
            given = ""
        result, _text = trace_request(
            None,
            text=given,
            invoice_code=options["code"],
            issue_date=options["date"],
            amount=options["amount"],
            upload=upload,
            asker=ask_nodes,
        )
        if options["json"]:
            self.stdout.write(orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode())
            return
        self.stdout.write(f"{result.verdict}")
        self.stdout.write(result.explanation_zh)
        self.stdout.write(result.explanation_en)
        for step in result.timeline:
            at = step.at.isoformat() if step.at else "-"
            self.stdout.write(f"  {at}  {step.step:<14} {step.node:<12} {step.detail}")
