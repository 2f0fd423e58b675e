"""Input schemas and output serializers of /api/v1/reconciliation."""

from __future__ import annotations

from typing import Any

from ninja import Schema
from pydantic import ConfigDict, Field

from piaotong.reconciliation.explain import explain_both
from piaotong.reconciliation.models import ImportIssue, ImportJob, ReconciliationItem


class MatchIn(Schema):
    model_config = ConfigDict(extra="forbid")
    invoice_number: str = Field(min_length=1, max_length=20)


class DeductIn(Schema):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(pattern=r"^\d{6}$")
    skip_refused: bool = False


def job_out(job: ImportJob) -> dict[str, Any]:
    return {
        "id": str(job.uid),
        "organisation_tax_id": job.organisation.tax_id,
        "kind": job.kind,
        "status": job.status,
        "file_name": job.file_name,
        "file_sha256": job.file_sha256,
        "rows_read": job.rows_read,
        "rows_total": job.rows_total,
        "percent": job.percent,
        "error_count": job.error_count,
        "notes": job.note_messages(),
        "summary": job.summary,
        "tolerances": {
            "per_line": str(job.per_line_tolerance),
            "per_invoice": str(job.per_invoice_tolerance),
            "date_window_days": job.date_window_days,
        },
        "period": [str(job.period_from), str(job.period_to)] if job.period_from else None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def issue_out(issue: ImportIssue) -> dict[str, Any]:
    return {
        "row": issue.row,
        "column": issue.column,
        "code": issue.code,
        "value": issue.value,
        "message": issue.message(),
    }


def _money(value: Any) -> str | None:
    return None if value is None else str(value)


def item_out(item: ReconciliationItem) -> dict[str, Any]:
    invoice = item.invoice
    zh, en = explain_both(item.rule, item.diffs, item.notes)
    return {
        "row": item.row,
        "status": item.status,
        "rule": item.rule,
        "book": None
        if item.row is None
        else {
            "number": item.number,
            "issue_date": str(item.issue_date),
            "seller_tax_id": item.seller_tax_id,
            "seller_name": item.seller_name,
            "amount": _money(item.amount),
            "tax": _money(item.tax),
            "total": _money(item.total),
        },
        "invoice": None
        if invoice is None
        else {
            "number": invoice.number,
            "issue_date": str(invoice.issue_date),
            "seller_tax_id": invoice.seller_tax_id,
            "seller_name": invoice.seller_name,
            "amount": str(invoice.total_amount),
            "tax": str(invoice.total_tax),
            "total": str(invoice.total_with_tax),
        },
        "differences": [
            {"field": d[0], "book": d[1], "platform": d[2], "delta": d[3]} for d in item.diffs
        ],
        "explanation_zh": zh,
        "explanation_en": en,
    }
