"""API input schemas and output serializers of received invoices and deduction."""

from decimal import Decimal
from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict

from piaotong.deduction.models import DeductionPeriod, DeductionSelection
from piaotong.invoices.models import Invoice

Org = Field(
    default=None, max_length=20, description="Buyer: organisation id or tax id (default: yours)"
)


class ReceivedFilters(Schema):
    organisation: str | None = Org
    period: str | None = Field(default=None, max_length=7, description="Issued in YYYYMM")
    seller: str | None = Field(default=None, max_length=100)
    kind: str | None = Field(default=None, max_length=20)
    status: str | None = Field(
        default=None,
        max_length=30,
        description="An invoice status, abnormal, out_of_control, or changed",
    )
    booked: str | None = Field(default=None, pattern="^(yes|no)$")
    state: str | None = Field(
        default=None, pattern="^(unselected|selected|counted|confirmed|not_deduct)$"
    )
    number: str | None = Field(default=None, max_length=20)


class SelectionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    invoice: str = Field(max_length=40, description="Invoice id (UUID) or 20-digit number")
    deduct: bool = True
    effective_tax: Decimal | None = Field(default=None, max_digits=20)
    reason: str = Field(default="", max_length=2, description="不抵扣 reason code 1-5")


class SelectIn(Schema):
    model_config = ConfigDict(extra="forbid")

    organisation: str | None = Org
    items: list[SelectionIn] = Field(min_length=1, max_length=5000)


class PeriodIn(Schema):
    model_config = ConfigDict(extra="forbid")

    organisation: str | None = Org


def received_out(invoice: Invoice) -> dict[str, Any]:
    """An annotated received invoice (queries.with_buyer_state)."""
    booked_at = getattr(invoice, "booked_at", None)
    return {
        "id": str(invoice.uid),
        "number": invoice.number,
        "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
        "kind": invoice.kind,
        "status": invoice.status,
        "authority_flag": invoice.authority_flag,
        "status_mark": invoice.status_mark[0],
        "changed": invoice.status != "issued" or bool(invoice.authority_flag),
        "seller_name": invoice.seller_name,
        "seller_tax_id": invoice.seller_tax_id,
        "total_amount": str(invoice.total_amount),
        "total_tax": str(invoice.total_tax),
        "total_with_tax": str(invoice.total_with_tax),
        "booked_at": booked_at.isoformat() if booked_at else None,
        "selection": (
            {
                "period": invoice.sel_period,  # type: ignore[attr-defined]
                "period_status": invoice.sel_status,  # type: ignore[attr-defined]
                "purpose": invoice.sel_purpose,  # type: ignore[attr-defined]
                "effective_tax": str(invoice.sel_effective_tax),  # type: ignore[attr-defined]
            }
            if getattr(invoice, "sel_period", None)
            else None
        ),
    }


def selection_out(selection: DeductionSelection) -> dict[str, Any]:
    return {
        "invoice": str(selection.invoice.uid),
        "number": selection.invoice.number,
        "period": selection.deduction_period.period,
        "purpose": selection.purpose,
        "reason": selection.reason,
        "face_amount": str(selection.face_amount),
        "face_tax": str(selection.face_tax),
        "effective_tax": str(selection.effective_tax),
        "selected_at": selection.selected_at.isoformat(),
        "revoked_at": selection.revoked_at.isoformat() if selection.revoked_at else None,
    }


def period_out(period: DeductionPeriod | None, code: str, statistics: Any) -> dict[str, Any]:
    return {
        "period": code,
        "status": period.status if period else "open",
        "counted_at": period.counted_at.isoformat() if period and period.counted_at else None,
        "confirmed_at": (
            period.confirmed_at.isoformat() if period and period.confirmed_at else None
        ),
        "statistics": statistics,
    }
