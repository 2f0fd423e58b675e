"""The audit log page (审计日志) for auditors and organisation admins: filter, page, export."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from piaotong.accounts.access import actor_for_request
from piaotong.accounts.permissions import Action
from piaotong.ledger.actions import do_record_audit_export
from piaotong.ledger.forms import AuditFilterForm
from piaotong.ledger.queries import (
    EXPORT_HEADER,
    export_rows,
    filter_audit_entries,
    visible_audit_entries,
)
from piaotong.lib.spreadsheet import csv_lines

PAGE_SIZE = 100


def _plain(filters: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in filters.items() if value}


@login_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponseBase:
    actor = actor_for_request(request)
    assert actor is not None
    if not actor.organisation_ids(Action.VIEW_AUDIT_LOG):
        raise PermissionDenied(_("Your roles do not include reading the audit log."))
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    entries = filter_audit_entries(visible_audit_entries(actor), **filters)
    if request.GET.get("export") == "csv":
        do_record_audit_export(
            actor, actor.organisation_ids(Action.VIEW_AUDIT_LOG), _plain(filters)
        )
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            csv_lines(EXPORT_HEADER, export_rows(entries)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
        return response
    page = Paginator(entries.order_by("-seq"), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request, "ledger/audit_log.html", {"form": form, "page": page, "query": query.urlencode()}
    )
