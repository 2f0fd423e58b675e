"""Web UI of verification (查验) and delivery (交付).

The verification page is public (no login) and works as plain HTML forms; with htmx, a form
swaps only the result panel. Bulk verification and delivery need a login and the matching role.
"""

from __future__ import annotations

import tempfile
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from piaotong.accounts.access import Actor, actor_for_request
from piaotong.accounts.permissions import Action
from piaotong.accounts.throttle import client_ip
from piaotong.invoices.access import get_invoice_for_actor
from piaotong.invoices.views import login_required
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.verification import actions, bulk, delivery
from piaotong.verification.choices import DeliveryChannel, Outcome, VerifyChannel
from piaotong.verification.conf import setting
from piaotong.verification.forms import (
    MAX_UPLOAD_BYTES,
    BulkForm,
    DeliveryForm,
    DigitalForm,
    LegacyForm,
    QrForm,
    UploadForm,
    upload_too_large,
)
from piaotong.verification.models import BulkVerification, Delivery
from piaotong.verification.results import VerificationResult

MODES = ("digital", "legacy", "qr", "file")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def requester_for(request: HttpRequest, channel: VerifyChannel = VerifyChannel.WEB) -> Any:
    return actions.Requester(actor_for_request(request), client_ip(request), channel)


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    assert actor is not None  # behind login_required
    return actor


# --- The public page ---------------------------------------------------------------------


def _forms(data: Any = None, files: Any = None, mode: str = "") -> dict[str, Any]:
    def bound(name: str) -> Any:
        return data if mode == name else None

    return {
        "digital": DigitalForm(bound("digital"), prefix="d"),
        "legacy": LegacyForm(bound("legacy"), prefix="l"),
        "qr": QrForm(bound("qr"), prefix="q"),
        "file": UploadForm(bound("file"), files if mode == "file" else None, prefix="u"),
    }


def _run(request: HttpRequest, mode: str, form: Any) -> VerificationResult | None:
    """Call the action the form asks for; violations are put onto the form."""
    requester = requester_for(request)
    form.is_valid()
    data = form.cleaned_data
    try:
        if mode == "digital":
            return actions.do_verify_digital(
                requester, data.get("number"), data.get("issue_date"), data.get("total_with_tax")
            )
        if mode == "legacy":
            return actions.do_verify_legacy(
                requester,
                data.get("code"),
                data.get("number"),
                data.get("issue_date"),
                data.get("amount"),
                data.get("check_code"),
            )
        if mode == "qr":
            return actions.do_verify_qr_text(requester, data.get("qr_text") or "")
        upload = data.get("file")
        if upload is None:
            raise RuleViolation("file", "required", _("Choose a file to upload."))
        if upload.size > MAX_UPLOAD_BYTES:
            raise upload_too_large(upload.size)
        return actions.do_verify_file(requester, upload.read(), upload.name or "")
    except (RuleViolation, RuleViolations) as error:
        form.show(error)
        return None


@require_http_methods(["GET", "POST"])
def verify_page(request: HttpRequest) -> HttpResponse:
    """The public verification page: 数电, legacy, QR text, or an uploaded image or file."""
    mode = request.POST.get("mode", "") if request.method == "POST" else ""
    if mode not in MODES:
        mode = ""
    forms = _forms(request.POST, request.FILES, mode)
    result = _run(request, mode, forms[mode]) if mode else None
    context = {
        "forms": forms,
        "result": result,
        "daily_limit": setting("PIAOTONG_VERIFY_DAILY_LIMIT"),
    }
    partial = bool(getattr(request, "htmx", False)) and request.method == "POST"
    template = "verification/_verify_body.html" if partial else "verification/verify.html"
    status = 429 if result and result.outcome in (Outcome.DAILY_LIMIT, Outcome.THROTTLED) else 200
    response = render(request, template, context, status=status)
    if result and result.retry_after:
        response["Retry-After"] = str(result.retry_after)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- Bulk --------------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def bulk_page(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actions.require_bulk_access(actor)
    form = BulkForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        try:
            name, rows = _bulk_rows(request, form)
        except (RuleViolation, RuleViolations) as error:
            form.show(error)
        else:
            saved = actions.do_save_bulk_results(actor, name, rows)
            return redirect("verification:bulk_result", uid=saved.uid)
    recent = BulkVerification.objects.filter(created_by=actor.user)[:10]
    return render(request, "verification/bulk.html", {"form": form, "recent": recent})


def _bulk_rows(request: HttpRequest, form: BulkForm) -> tuple[str, list[dict[str, Any]]]:

    requester = requester_for(request, VerifyChannel.BULK)
    files = request.FILES.getlist("files")
    sheet = request.FILES.get("spreadsheet")
    if sheet is not None:
        if (sheet.size or 0) > MAX_UPLOAD_BYTES:
            raise upload_too_large(sheet.size or 0)
        table = bulk.read_table(sheet.read(), sheet.name or "")
        rows = bulk.parse_rows(table, timezone.localdate())
        return sheet.name or "", list(bulk.verify_rows(requester, rows))
    if files:
        limit = setting("PIAOTONG_VERIFY_BULK_MAX_ROWS")
        if len(files) > limit:
            raise RuleViolation(
                "files",
                "too_many_files",
                _("At most %(max)s files can be verified at once.") % {"max": limit},
            )
        for upload in files:
            if (upload.size or 0) > MAX_UPLOAD_BYTES:
                raise upload_too_large(upload.size or 0)
        loaded = [(upload.name or "", upload.read()) for upload in files]
        name = _("%(count)s files") % {"count": len(loaded)}
        return name, list(bulk.verify_files(requester, loaded))
    raise RuleViolation("spreadsheet", "required", _("Choose a spreadsheet or some files."))


def _own_bulk(request: HttpRequest, uid: str) -> BulkVerification:
    found = BulkVerification.objects.filter(uid=uid, created_by=_actor(request).user).first()
    if found is None:
        raise Http404("No such bulk verification")
    return found


@login_required
@require_GET
def bulk_result(request: HttpRequest, uid: str) -> HttpResponse:
    saved = _own_bulk(request, uid)
    rows = [bulk.localized(row) for row in saved.rows]
    counts = {outcome: sum(r["outcome"] == outcome for r in rows) for outcome in Outcome.values}
    context = {"saved": saved, "rows": rows, "counts": counts, "outcomes": Outcome}
    return render(request, "verification/bulk_result.html", context)


@login_required
@require_GET
def bulk_export(request: HttpRequest, uid: str) -> FileResponse:
    saved = _own_bulk(request, uid)
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Not a context manager: FileResponse closes (and so deletes) the file once it is sent.
    output = tempfile.TemporaryFile(dir=settings.VAR_DIR)  # noqa: SIM115
    bulk.write_results_xlsx(saved.rows, output)
    output.seek(0)
    return FileResponse(output, as_attachment=True, filename=bulk.export_name(), content_type=XLSX)


# --- Delivery ----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def deliver_page(request: HttpRequest, number: str) -> HttpResponse:
    """Send one invoice to its buyer, and its delivery log."""
    actor = _actor(request)
    invoice = get_invoice_for_actor(actor, number)
    if invoice.number is None:
        raise Http404("Drafts are not delivered")
    may_deliver = actor.can(Action.DELIVER_INVOICE, invoice.seller_id)
    if request.method == "POST":
        if not may_deliver:
            raise PermissionDenied(_("Your role may not deliver this organisation's invoices."))
        form = DeliveryForm(request.POST)
        if form.is_valid():
            try:
                delivery.do_request_delivery(
                    actor,
                    invoice,
                    form.cleaned_data["channel"],
                    form.cleaned_data["address"],
                    form.cleaned_data["formats"],
                    link_base=request.build_absolute_uri("/"),
                )
            except (RuleViolation, RuleViolations) as error:
                form.show(error)
            else:
                messages.success(request, _("Delivery requested; its progress is logged below."))
                return redirect("verification:deliver", number=invoice.number)
    else:
        channel = (
            DeliveryChannel.EMAIL
            if invoice.buyer_email or not invoice.buyer_phone
            else (DeliveryChannel.SMS)
        )
        form = DeliveryForm(
            initial={
                "channel": channel,
                "address": invoice.buyer_email or invoice.buyer_phone,
                "formats": ["pdf", "ofd", "xml"],
            }
        )
    deliveries = Delivery.objects.filter(invoice=invoice).prefetch_related("log")
    context = {
        "invoice": invoice,
        "form": form,
        "may_deliver": may_deliver,
        "deliveries": deliveries,
    }
    return render(request, "verification/deliver.html", context)


@login_required
@require_GET
def delivery_log(request: HttpRequest) -> HttpResponse:
    """Deliveries of the organisations whose invoices the user may deliver, newest first."""
    actor = _actor(request)
    org_ids = actor.organisation_ids(Action.DELIVER_INVOICE)
    deliveries = (
        Delivery.objects.filter(invoice__seller_id__in=org_ids)
        .select_related("invoice")
        .order_by("-created_at", "-id")
    )
    page = Paginator(deliveries, 50).get_page(request.GET.get("page"))
    return render(request, "verification/deliveries.html", {"page": page})


@require_http_methods(["GET", "POST"])
def download(request: HttpRequest, code: str) -> HttpResponse:
    """The page an SMS link opens: GET shows the invoice and the formats (so link previews do not
    spend the code); POST spends the code on one file."""
    if request.method == "POST":
        try:
            got = delivery.do_use_download_code(code, request.POST.get("format", ""))
        except RuleViolation as error:
            context = {
                "error": error.text(),
                "found": delivery.find_code(code),
                "formats": delivery.FORMATS,
            }
            return render(request, "verification/download.html", context, status=410)
        response = HttpResponse(got.data, content_type=delivery.CONTENT_TYPES[got.fmt])
        response["Content-Disposition"] = f'attachment; filename="{got.invoice.number}.{got.fmt}"'
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "no-store"
        return response
    found = delivery.find_code(code)
    context = {"found": found, "formats": delivery.FORMATS}
    if found is None:
        context["error"] = delivery.code_refused().text()
    response = render(request, "verification/download.html", context, status=200 if found else 410)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
