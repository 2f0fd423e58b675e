"""API input schemas and output serializers of the VAT return."""

from typing import Any

from ninja import Field, Schema
from pydantic import ConfigDict

from piaotong.filing.export import return_document
from piaotong.filing.models import VatReturn

Org = Field(default=None, max_length=20, description="Organisation id or tax id (default: yours)")


class StepIn(Schema):
    model_config = ConfigDict(extra="forbid")

    organisation: str | None = Org


class AmendIn(StepIn):
    reason: str = Field(max_length=500)


def version_out(vat_return: VatReturn) -> dict[str, Any]:
    """A stored version in the documented JSON shape (filing.export)."""
    return return_document(vat_return)
