"""`Idempotency-Key` for every POST: a retried request never does the work twice.

The record is inserted before the action runs, in the same transaction. A concurrent retry with
the same key blocks on the unique index until the first commits, then replays its answer; if
the first fails, its record rolls back with it and the retry runs afresh. Only successful
answers are kept: a refused request wrote nothing, so retrying it is safe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse

from piaotong.api.models import IdempotencyRecord

MAX_KEY_LENGTH = 200
HEADER = "Idempotency-Key"


def json_response(status: int, body: Any) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, code: str, zh: str, en: str) -> HttpResponse:
    detail = {"field": HEADER, "code": code, "message": en, "message_zh": zh, "message_en": en}
    return json_response(status, {"detail": [detail]})


def _request_hash(request: HttpRequest) -> str:
    """What makes two requests "the same": method, path and the body's JSON content.

    A retry may re-serialise its body (other whitespace, other key order); that is still the
    same request. A body that is not JSON is compared byte for byte.
    """
    head = f"{request.method} {request.path}\n".encode()
    try:
        body = orjson.dumps(orjson.loads(request.body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        body = request.body
    return hashlib.sha256(head + body).hexdigest()


def _replay(record: IdempotencyRecord, request_hash: str) -> HttpResponse:
    if record.request_hash != request_hash:
        return _error(
            409,
            "idempotency_key_reused",
            "该幂等键已用于另一个请求；请为新请求使用新的键。",
            "This Idempotency-Key was used for a different request; use a new key for a new request.",
        )
    response = json_response(record.status_code, record.response)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a POST endpoint that returns a JSON `HttpResponse`."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        key = request.headers.get(HEADER)
        if key is None:
            return view(request, *args, **kwargs)
        if not key.strip() or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            return _error(
                400,
                "idempotency_key_invalid",
                f"幂等键须为 1 到 {MAX_KEY_LENGTH} 个可打印字符。",
                f"An Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters.",
            )
        principal = request.auth.principal  # type: ignore[attr-defined]
        request_hash = _request_hash(request)
        existing = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
        if existing is not None:
            return _replay(existing, request_hash)
        try:
            return _run_once(view, request, principal, key, request_hash, *args, **kwargs)
        except IntegrityError:
            record = IdempotencyRecord.objects.filter(principal=principal, key=key).first()
            if record is None:
                raise
            return _replay(record, request_hash)

    return wrapper


class _Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def _run_once(
    view: Callable[..., HttpResponse],
    request: HttpRequest,
    principal: str,
    key: str,
    request_hash: str,
    *args: Any,
    **kwargs: Any,
) -> HttpResponse:
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                principal=principal,
                key=key,
                method=request.method or "POST",
                path=request.path,
                request_hash=request_hash,
                status_code=0,
                response={},
            )
            response = view(request, *args, **kwargs)
            if response.status_code >= 300:
                raise _Refused(response)
            record.status_code = response.status_code
            record.response = orjson.loads(response.content)
            record.save(update_fields=["status_code", "response"])
            return response
    except _Refused as refused:
        return refused.response
