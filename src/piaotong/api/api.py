"""The JSON API (/api/v1/), its authentication and its error handlers."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from piaotong.api.auth import AUTH
from piaotong.api.errors import bulk_violations_json, violations_json
from piaotong.api.idempotency import json_response
from piaotong.deduction.api import router as deduction_router
from piaotong.documents.api import router as documents_router
from piaotong.exchange.api import router as exchange_router
from piaotong.filing.api import router as filing_router
from piaotong.invoices.actions import BulkViolations
from piaotong.invoices.api import router as invoices_router
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.reconciliation.api import router as reconciliation_router
from piaotong.verification.api import router as verification_router

api = NinjaAPI(
    title="Piaotong 票通 API",
    version="1",
    urls_namespace="api-v1",
    auth=AUTH,
    description=(
        "Electronic invoices: issue, review, list. Authenticate with `X-API-Key: pt_...` or "
        "`Authorization: Bearer pt_...`. Every POST accepts an `Idempotency-Key` header: a retry "
        "with the same key returns the first answer and never issues twice."
    ),
)
api.add_router("/invoices", invoices_router)
api.add_router("/documents", documents_router)
api.add_router("/verify", verification_router)
api.add_router("/deduction", deduction_router)
api.add_router("/reconciliation", reconciliation_router)
api.add_router("/filing", filing_router)
api.add_router("/sync", exchange_router)


def _simple(status: int, code: str, zh: str, en: str, field: str = "") -> HttpResponse:
    return json_response(
        status,
        {
            "detail": [
                {"field": field, "code": code, "message": en, "message_zh": zh, "message_en": en}
            ]
        },
    )


@api.exception_handler(RuleViolation)
def on_violation(request: HttpRequest, exc: RuleViolation) -> HttpResponse:
    return json_response(422, violations_json([exc]))


@api.exception_handler(RuleViolations)
def on_violations(request: HttpRequest, exc: RuleViolations) -> HttpResponse:
    return json_response(422, violations_json(exc.violations))


@api.exception_handler(BulkViolations)
def on_bulk(request: HttpRequest, exc: BulkViolations) -> HttpResponse:
    return json_response(422, bulk_violations_json(exc.items))


@api.exception_handler(ValidationError)
def on_schema_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    detail = []
    for error in exc.errors:
        loc = [
            str(part)
            for part in error.get("loc", [])
            if part not in {"body", "payload", "query", "filters"}
        ]
        message = str(error.get("msg", "invalid"))
        detail.append(
            {
                "field": ".".join(loc),
                "code": str(error.get("type", "invalid")),
                "message": message,
                "message_zh": f"格式错误：{message}",
                "message_en": message,
            }
        )
    return json_response(422, {"detail": detail})


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _simple(404, "not_found", "未找到，或您无权查看。", "Not found, or not visible to you.")


@api.exception_handler(PermissionDenied)
def on_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return _simple(
        403,
        "permission_denied",
        "您的角色无权执行此操作。",
        "Your role does not allow this action.",
    )


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _simple(
        401,
        "unauthenticated",
        "请使用 API 密钥或登录后再试。",
        "Authenticate with an API key or log in.",
    )
