"""API input schemas and output serializers for invoices."""

from datetime import date
from decimal import Decimal
from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict

from piaotong.invoices.choices import BuyerKind, InvoiceKind, InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine
from piaotong.invoices.rules import InvoiceDraft, LineDraft
from piaotong.lib.money import fine_text

# Generous outer bounds only: the domain rules give the precise, translated messages.
Text = Field(default="", max_length=2000)


class LineIn(Schema):
    model_config = ConfigDict(extra="forbid")

    tax_code: str = Field(max_length=40, examples=["3040201030000000000"])
    item_name: str = Field(max_length=2000, examples=["软件维护费"])
    tax_rate: str = Field(max_length=20, examples=["0.06"])
    amount: Decimal | None = Field(default=None, max_digits=40)
    quantity: Decimal | None = Field(default=None, max_digits=40)
    unit_price: Decimal | None = Field(default=None, max_digits=40)
    tax: Decimal | None = Field(default=None, max_digits=40)
    spec: str = Text
    unit: str = Text
    kind: int = Field(default=0, ge=0, le=2)
    tax_inclusive: bool = False

    def to_draft(self) -> LineDraft:
        return LineDraft(**self.model_dump())


class InvoiceIn(Schema):
    model_config = ConfigDict(extra="forbid")

    kind: InvoiceKind
    buyer_name: str = Field(max_length=2000)
    buyer_kind: BuyerKind = BuyerKind.ORGANISATION
    buyer_tax_id: str = Field(default="", max_length=100)
    buyer_address: str = Text
    buyer_bank: str = Text
    buyer_email: str = Field(default="", max_length=254)
    buyer_phone: str = Field(default="", max_length=100)
    remarks: str = Text
    lines: list[LineIn] = Field(max_length=2001)
    seller_tax_id: str | None = Field(
        default=None,
        max_length=20,
        description="Needed only when the caller may issue for several organisations.",
    )

    def to_draft(self) -> InvoiceDraft:
        data = self.model_dump(exclude={"lines", "seller_tax_id"})
        return InvoiceDraft(**data, lines=[line.to_draft() for line in self.lines])


class BulkIn(Schema):
    model_config = ConfigDict(extra="forbid")

    seller_tax_id: str | None = None
    invoices: list[InvoiceIn] = Field(min_length=1, max_length=1000)


class RejectIn(Schema):
    reason: str = Field(max_length=500)


class InvoiceFilters(Schema):
    date_from: date | None = None
    date_to: date | None = None
    status: InvoiceStatus | None = None
    kind: InvoiceKind | None = None
    buyer: str | None = Field(
        default=None, max_length=100, description="Buyer name fragment or tax id"
    )
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    number: str | None = Field(default=None, max_length=20)


def line_out(line: InvoiceLine) -> dict[str, Any]:
    return {
        "position": line.position,
        "kind": line.kind,
        "tax_code": line.tax_code,
        "item_name": line.item_name,
        "printed_name": line.printed_name,
        "spec": line.spec,
        "unit": line.unit,
        "quantity": fine_text(line.quantity),
        "unit_price": fine_text(line.unit_price),
        "amount": str(line.amount),
        "tax_rate": line.tax_rate,
        "tax": str(line.tax),
    }


def invoice_summary(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": str(invoice.uid),
        "number": invoice.number,
        "kind": invoice.kind,
        "status": invoice.status,
        "authority_flag": invoice.authority_flag or None,
        "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
        "seller": {"name": invoice.seller_name, "tax_id": invoice.seller_tax_id},
        "buyer": {
            "kind": invoice.buyer_kind,
            "name": invoice.buyer_name,
            "tax_id": invoice.buyer_tax_id,
        },
        "total_amount": str(invoice.total_amount),
        "total_tax": str(invoice.total_tax),
        "total_with_tax": str(invoice.total_with_tax),
    }


def invoice_out(invoice: Invoice) -> dict[str, Any]:
    return invoice_summary(invoice) | {
        "remarks": invoice.remarks,
        "issuer": invoice.issuer_name,
        "reviewer": invoice.reviewer_name,
        "review_note": invoice.review_note,
        "created_by": invoice.created_by_label,
        "signature": {
            "key_id": invoice.signing_key_id,
            "value": invoice.signature,
            "payload_sha256": invoice.payload_hash,
        }
        if invoice.signature
        else None,
        "lines": [line_out(line) for line in invoice.lines.all()],
    }
