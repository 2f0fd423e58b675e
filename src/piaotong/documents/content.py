"""What every document of an invoice shows: the signed payload and the texts derived from it.

The canonical payload (`invoices.payload.invoice_payload`) holds every printed fact and was
signed at issue, so the documents are rendered from it and nothing else: a document can never
show a fact the signature does not cover, except the blue invoice's number on a red-letter
invoice (红字发票), which is a pointer, not a fact of the red invoice's payload.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import orjson

from piaotong.invoices.choices import SPECIAL_KINDS, InvoiceKind
from piaotong.lib.canonical import canonical_json, sha256_hex
from piaotong.lib.qr import compose_digital_qr, compose_signed_payload, signed_payload_message

KIND_TITLES: dict[str, str] = {
    InvoiceKind.DIGITAL_SPECIAL: "电子发票（增值税专用发票）",
    InvoiceKind.DIGITAL_ORDINARY: "电子发票（普通发票）",
    InvoiceKind.PAPER_SPECIAL: "增值税专用发票",
    InvoiceKind.PAPER_ORDINARY: "普通发票",
}


@dataclass(frozen=True)
class SignedInvoice:
    """An issued invoice as its documents carry it.

    Invariant: `sha256(payload_bytes) == payload_hash`, and `payload` is `payload_bytes` decoded.
    `signature` was made by key `key_id` over `payload_bytes` at issue; `qr_signature` by key
    `qr_key_id` over `signed_payload_message(signed_fields)` when the document was rendered.
    """

    payload: dict[str, Any]
    payload_bytes: bytes
    payload_hash: str
    signature: str
    key_id: str
    blue_number: str
    qr_key_id: str
    qr_signature: str

    @property
    def number(self) -> str:
        return str(self.payload["number"])

    @property
    def issue_date(self) -> date:
        return date.fromisoformat(str(self.payload["issue_date"]))

    @property
    def is_red(self) -> bool:
        return bool(self.blue_number)

    @property
    def is_special(self) -> bool:
        return self.payload["kind"] in SPECIAL_KINDS

    @property
    def title(self) -> str:
        return KIND_TITLES.get(str(self.payload["kind"]), "电子发票")

    @property
    def qr_kind_code(self) -> str:
        return "31" if self.is_special else "32"

    @property
    def qr_text(self) -> str:
        return compose_digital_qr(
            self.qr_kind_code,
            self.number,
            self.issue_date,
            Decimal(self.payload["total_with_tax"]),
        )

    @property
    def signed_fields(self) -> dict[str, str]:
        return signed_fields(self.payload, self.payload_hash)

    @property
    def signed_qr_text(self) -> str:
        return compose_signed_payload(self.signed_fields, self.qr_key_id, self.qr_signature)

    @property
    def payload_base64(self) -> str:
        return base64.b64encode(self.payload_bytes).decode()


def signed_fields(payload: dict[str, Any], payload_hash: str) -> dict[str, str]:
    """The facts of the signed-payload QR, taken from a canonical payload."""
    return {
        "number": str(payload["number"]),
        "issue_date": str(payload["issue_date"]),
        "seller_tax_id": str(payload["seller"]["tax_id"]),
        "buyer_tax_id": str(payload["buyer"]["tax_id"]),
        "total_amount": str(payload["total_amount"]),
        "total_tax": str(payload["total_tax"]),
        "total_with_tax": str(payload["total_with_tax"]),
        "payload_hash": payload_hash,
    }


def build_signed_invoice(
    payload: dict[str, Any],
    signature: str,
    key_id: str,
    blue_number: str,
    qr_signer: Any,
) -> SignedInvoice:
    """Assemble the document facts; `qr_signer` has `key_id` and `sign(bytes) -> str`."""
    payload_bytes = canonical_json(payload)
    payload_hash = sha256_hex(payload_bytes)
    decoded = orjson.loads(payload_bytes)
    message = signed_payload_message(signed_fields(decoded, payload_hash))
    return SignedInvoice(
        payload=decoded,
        payload_bytes=payload_bytes,
        payload_hash=payload_hash,
        signature=signature,
        key_id=key_id,
        blue_number=blue_number,
        qr_key_id=qr_signer.key_id,
        qr_signature=qr_signer.sign(message),
    )


def decode_payload(payload_b64: str) -> tuple[bytes, dict[str, Any]]:
    raw = base64.b64decode(payload_b64, validate=True)
    return raw, orjson.loads(raw)
