"""One error shape for every API failure, in the request's language and in both languages.

{"detail": [{"field": "lines.0.tax_rate", "code": "rate_not_allowed",
             "message": "...", "message_zh": "...", "message_en": "..."}]}
"""

from __future__ import annotations

from typing import Any

from django.utils import translation

from piaotong.lib.errors import RuleViolation


def violation_json(violation: RuleViolation) -> dict[str, Any]:
    with translation.override("zh-hans"):
        zh = violation.text()
    with translation.override("en"):
        en = violation.text()
    return {
        "field": violation.field,
        "code": violation.code,
        "message": violation.text(),
        "message_zh": zh,
        "message_en": en,
    }


def violations_json(violations: list[RuleViolation]) -> dict[str, Any]:
    return {"detail": [violation_json(v) for v in violations]}


def bulk_violations_json(items: dict[int, list[RuleViolation]]) -> dict[str, Any]:
    return {
        "detail": [
            {
                "field": "invoices",
                "code": "bulk_invalid",
                "message": f"{len(items)} invoices have errors; nothing was issued.",
                "message_zh": f"{len(items)} 张发票有错误，全部未开具。",
                "message_en": f"{len(items)} invoices have errors; nothing was issued.",
            }
        ],
        "items": [
            {"index": index, "errors": [violation_json(v) for v in errors]}
            for index, errors in sorted(items.items())
        ],
    }
