"""Input schemas of the verification API."""

from __future__ import annotations

from ninja import Schema
from pydantic import ConfigDict, Field


class VerifyIn(Schema):
    """One verification: a QR text, or the typed fields of a 数电 or a legacy invoice.

    数电票: `number` (20 digits), `issue_date`, `total_with_tax` (价税合计).
    Legacy: `code` (发票代码), `number` (8 digits), `issue_date`, and `amount` (不含税金额, 专票
    kinds) or `check_code` (the last 6 digits of the 校验码, 普票 kinds).
    """

    model_config = ConfigDict(extra="forbid")

    qr: str | None = Field(default=None, max_length=500)
    number: str | None = Field(default=None, max_length=40)
    code: str | None = Field(default=None, max_length=40)
    issue_date: str | None = Field(default=None, max_length=40)
    total_with_tax: str | None = Field(default=None, max_length=40)
    amount: str | None = Field(default=None, max_length=40)
    check_code: str | None = Field(default=None, max_length=40)
