"""Endpoints under /api/v1/sync: the not-found trace."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from pydantic import ConfigDict, Field

from piaotong.accounts.access import Actor
from piaotong.api.idempotency import json_response
from piaotong.exchange.trace_facts import require_tracer, trace_request
from piaotong.exchange.trace_remote import ask_nodes
from piaotong.lib.errors import RuleViolation

router = Router(tags=["exchange"])
ERRORS: dict[int, Any] = {403: dict, 422: dict}
MAX_IMAGE_BASE64 = 28 * 1024 * 1024  # 20 MB of file, base64-encoded


class TraceIn(Schema):
    """What the caller has of the invoice: `input` is a 20-digit number, a legacy code and
    number ("011001900111 00000001", or `invoice_code` apart), or an official QR text;
    `image_base64` a picture of the QR code or an invoice file instead. `issue_date` and
    `amount` are what was typed when checking it (to find the field that is wrong)."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(default="", max_length=512)
    invoice_code: str = Field(default="", max_length=12)
    issue_date: str = Field(default="", max_length=20)
    amount: str = Field(default="", max_length=30)
    image_base64: str = Field(default="", max_length=MAX_IMAGE_BASE64)
    image_name: str = Field(default="upload", max_length=100)


def _upload(payload: TraceIn) -> tuple[bytes, str] | None:
    if not payload.image_base64:
        return None
    try:
        return base64.b64decode(payload.image_base64, validate=True), payload.image_name
    except (binascii.Error, ValueError):
        raise RuleViolation(
            "image_base64", "not_base64", "image_base64 is not valid base64; encode the file."
        ) from None


@router.post(
    "/trace", response={200: dict, **ERRORS}, summary="Why can't this invoice be found? (trace)"
)
def trace(request: HttpRequest, payload: TraceIn) -> HttpResponse:
    actor: Actor = require_tracer(request.auth)  # type: ignore[attr-defined]
    result, _text = trace_request(
        actor,
        text=payload.input,
        invoice_code=payload.invoice_code,
        issue_date=payload.issue_date,
        amount=payload.amount,
        upload=_upload(payload),
        asker=ask_nodes,
    )
    return json_response(200, result.as_json())
