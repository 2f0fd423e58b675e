"""Endpoints under /api/v1/verify: one verification by fields or QR text, or by file.

Anonymous callers are allowed (the public page's API), limited per IP address; an API key or a
logged-in session is limited per key or user instead. Refusals answer 429 with Retry-After and
the same body shape as every answer.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import File, Router
from ninja.files import UploadedFile

from piaotong.accounts.access import Actor
from piaotong.accounts.throttle import client_ip
from piaotong.api.auth import ApiKeyAuth, BearerAuth, SessionActorAuth
from piaotong.api.idempotency import json_response
from piaotong.verification import actions
from piaotong.verification.choices import Outcome, VerifyChannel
from piaotong.verification.forms import MAX_UPLOAD_BYTES, upload_too_large
from piaotong.verification.results import VerificationResult, result_json
from piaotong.verification.schemas import VerifyIn

router = Router(tags=["verification"])
ERRORS: dict[int, Any] = {422: dict, 429: dict}


class Anonymous:
    """The caller without credentials (truthy, so django-ninja lets the request through)."""

    principal = ""


ANONYMOUS = Anonymous()
_SESSION = SessionActorAuth()


def session_or_anonymous(request: HttpRequest) -> Actor | Anonymous | None:
    """A logged-in browser (its CSRF token is checked); anyone else is anonymous."""
    if request.COOKIES.get(settings.SESSION_COOKIE_NAME) and request.user.is_authenticated:
        return _SESSION(request)
    return ANONYMOUS


OPTIONAL_AUTH = [ApiKeyAuth(), BearerAuth(), session_or_anonymous]


def _requester(request: HttpRequest) -> actions.Requester:
    auth = getattr(request, "auth", None)
    actor = auth if isinstance(auth, Actor) else None
    return actions.Requester(actor, client_ip(request), VerifyChannel.API)


def _answer(result: VerificationResult) -> HttpResponse:
    refused = result.outcome in (Outcome.DAILY_LIMIT, Outcome.THROTTLED)
    response = json_response(429 if refused else 200, result_json(result))
    if result.retry_after:
        response["Retry-After"] = str(result.retry_after)
    return response


@router.post(
    "",
    auth=OPTIONAL_AUTH,
    response={200: dict, **ERRORS},
    summary="Verify an invoice (查验) by its fields or its QR text",
)
def verify(request: HttpRequest, payload: VerifyIn) -> HttpResponse:
    requester = _requester(request)
    if payload.qr:
        return _answer(actions.do_verify_qr_text(requester, payload.qr))
    if payload.code:
        return _answer(
            actions.do_verify_legacy(
                requester,
                payload.code,
                payload.number,
                payload.issue_date,
                payload.amount,
                payload.check_code,
            )
        )
    return _answer(
        actions.do_verify_digital(
            requester, payload.number, payload.issue_date, payload.total_with_tax
        )
    )


@router.post(
    "/file",
    auth=OPTIONAL_AUTH,
    response={200: dict, **ERRORS},
    summary="Verify an uploaded QR image or invoice file (PNG, JPEG, PDF, XML, OFD)",
)
def verify_file(request: HttpRequest, file: File[UploadedFile]) -> HttpResponse:
    if file.size is not None and file.size > MAX_UPLOAD_BYTES:
        raise upload_too_large(file.size)
    return _answer(actions.do_verify_file(_requester(request), file.read(), file.name or ""))
