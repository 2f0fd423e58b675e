"""The canonical payload of an issued invoice: what is signed, hashed and exchanged.

It holds every printed fact of the invoice and nothing local to this node (no row ids), so any
node, and any offline verifier, can recompute its hash from a document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from piaotong.invoices.choices import PLATFORM_CODES, InvoiceKind
from piaotong.invoices.models import Invoice, InvoiceLine
from piaotong.lib.money import fine_text

PAYLOAD_SCHEMA = "piaotong.invoice"
PAYLOAD_VERSION = 1


def line_payload(line: InvoiceLine) -> dict[str, Any]:
    return {
        "position": line.position,
        "kind": line.kind,
        "tax_code": line.tax_code,
        "name": line.printed_name,
        "spec": line.spec,
        "unit": line.unit,
        "quantity": fine_text(line.quantity),
        "unit_price": fine_text(line.unit_price),
        "amount": str(line.amount),
        "tax_rate": line.tax_rate,
        "tax": str(line.tax),
    }


def invoice_payload(invoice: Invoice, lines: Sequence[InvoiceLine]) -> dict[str, Any]:
    """Blue invoices have exactly these keys; a red-letter invoice (红字发票) adds `red_of`, the
    number of the blue invoice it reverses (its remarks name the confirmation as well)."""
    payload = {
        "schema": PAYLOAD_SCHEMA,
        "version": PAYLOAD_VERSION,
        "number": invoice.number,
        "kind": invoice.kind,
        "platform_kind": PLATFORM_CODES[InvoiceKind(invoice.kind)],
        "issue_date": invoice.issue_date,
        "seller": {
            "name": invoice.seller_name,
            "tax_id": invoice.seller_tax_id,
            "address": invoice.seller_address,
            "bank": invoice.seller_bank,
        },
        "buyer": {
            "kind": invoice.buyer_kind,
            "name": invoice.buyer_name,
            "tax_id": invoice.buyer_tax_id,
            "address": invoice.buyer_address,
            "bank": invoice.buyer_bank,
        },
        "lines": [line_payload(line) for line in lines],
        "total_amount": str(invoice.total_amount),
        "total_tax": str(invoice.total_tax),
        "total_with_tax": str(invoice.total_with_tax),
        "remarks": invoice.remarks,
        "issuer": invoice.issuer_name,
        "reviewer": invoice.reviewer_name,
    }
    if invoice.red_of is not None:
        payload["red_of"] = {"number": invoice.red_of.number}
    return payload
