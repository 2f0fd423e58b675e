"""Web UI of issuing (开具): dashboard, issue form with live tax preview, review queue (复核),
invoice list and invoice detail.

Every view builds the actor, asks an access helper, calls at most one action and renders or
redirects (POST, redirect, GET, with a message). htmx requests get partials; every flow also
works as plain HTML forms without JavaScript.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required as django_login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet, Sum
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh
from django_htmx.middleware import HtmxDetails

from piaotong.accounts.access import Actor, actor_for_request
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.invoices import actions
from piaotong.invoices.access import get_invoice_for_actor, require_invoice_reader, visible_invoices
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.export import write_invoices_xlsx
from piaotong.invoices.forms import (
    LINE_PREFIX,
    LINES_PREFIX,
    InvoiceEntry,
    LineForm,
    ListFilterForm,
    Preview,
    RejectForm,
    blank_line,
    entry_data_for,
    violations_of,
)
from piaotong.invoices.models import Invoice, QuotaUsage
from piaotong.invoices.queries import filter_invoices
from piaotong.invoices.rules import MAX_LINES
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.taxcodes import search_tax_codes

PAGE_SIZE = 50
LATEST = 10


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def login_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Django's login_required, except that an htmx request from an expired session reloads the
    page (which then goes to the login form) instead of swapping the login form into a panel."""
    guarded = django_login_required(view)

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated and request.headers.get("HX-Request") == "true":
            return HttpResponseClientRefresh()
        return guarded(request, *args, **kwargs)

    return wrapper


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    assert actor is not None  # every view here is behind login_required
    return actor


def _is_partial(request: HtmxHttpRequest) -> bool:
    """An htmx request that swaps part of the page (not a history restore, which needs all)."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _next_or(request: HttpRequest, fallback: str) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, request.is_secure()
    ):
        return target
    return fallback


def _show_refusal(request: HttpRequest, error: RuleViolation | RuleViolations) -> None:
    for violation in violations_of(error):
        messages.error(request, violation.text())


# --- Dashboard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganisationSummary:
    """One organisation's month at a glance (本月开票概况)."""

    organisation: Organisation
    issued_count: int
    issued_amount: Decimal
    issued_tax: Decimal
    issued_total: Decimal
    drafts: int
    pending_review: int
    quota_used: Decimal

    @property
    def quota_remaining(self) -> Decimal:
        return self.organisation.issuing_quota - self.quota_used


def _organisation_summaries(actor: Actor) -> list[OrganisationSummary]:
    """Three queries whatever the number of organisations: organisations, counts, quota."""
    org_ids = actor.organisation_ids(Action.VIEW_INVOICES)
    today = timezone.localdate()
    this_month = Q(issue_date__gte=today.replace(day=1))
    zero = Decimal("0.00")
    stats: dict[int, Mapping[str, Any]] = {
        row["seller_id"]: row
        for row in Invoice.objects.filter(seller_id__in=org_ids)
        .values("seller_id")
        .annotate(
            issued_count=Count("pk", filter=this_month),
            issued_amount=Sum("total_amount", filter=this_month, default=zero),
            issued_tax=Sum("total_tax", filter=this_month, default=zero),
            issued_total=Sum("total_with_tax", filter=this_month, default=zero),
            drafts=Count("pk", filter=Q(status=InvoiceStatus.DRAFT)),
            pending_review=Count("pk", filter=Q(status=InvoiceStatus.PENDING_REVIEW)),
        )
        .order_by()
    }
    used = dict(
        QuotaUsage.objects.filter(
            organisation_id__in=org_ids, period=today.strftime("%Y%m")
        ).values_list("organisation_id", "used")
    )
    nothing = {"issued_count": 0, "drafts": 0, "pending_review": 0} | dict.fromkeys(
        ["issued_amount", "issued_tax", "issued_total"], zero
    )
    return [
        OrganisationSummary(
            organisation=org,
            issued_count=row["issued_count"],
            issued_amount=row["issued_amount"],
            issued_tax=row["issued_tax"],
            issued_total=row["issued_total"],
            drafts=row["drafts"],
            pending_review=row["pending_review"],
            quota_used=used.get(org.pk, zero),
        )
        for org in Organisation.objects.filter(pk__in=org_ids)
        for row in [stats.get(org.pk, nothing)]
    ]


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    summaries = _organisation_summaries(actor)
    latest = visible_invoices(actor).order_by("-created_at", "-id")[:LATEST]
    context = {
        "summaries": summaries,
        "latest": latest,
        "can_draft": bool(actor.organisation_ids(Action.DRAFT_INVOICE)),
        "review_count": sum(
            s.pending_review
            for s in summaries
            if actor.can(Action.REVIEW_INVOICE, s.organisation.pk)
        ),
    }
    return render(request, "invoices/dashboard.html", context)


# --- Issue form --------------------------------------------------------------------------


def _sellers(actor: Actor) -> QuerySet[Organisation]:
    org_ids = actor.organisation_ids(Action.DRAFT_INVOICE)
    if not org_ids:
        raise PermissionDenied(_("You may not draft invoices for any organisation."))
    return Organisation.objects.filter(pk__in=org_ids)


def _save(actor: Actor, entry: InvoiceEntry, intent: str) -> tuple[Invoice, str]:
    """Call the action the pressed button asks for; returns the invoice and a success message."""
    seller, draft = entry.seller, entry.draft()
    assert seller is not None  # the entry is valid
    if intent == "draft":
        return actions.do_create_draft(actor, seller, draft), _("Draft saved.")
    if intent == "submit":
        invoice = actions.do_create_draft(actor, seller, draft, submit=True)
        return invoice, _("Draft saved and sent for review.")
    invoice = actions.do_issue_new_invoice(actor, seller, draft)
    return invoice, _("Invoice %(number)s issued.") % {"number": invoice.number}


SAVE_INTENTS = frozenset({"draft", "submit", "issue"})


def _render_entry(
    request: HttpRequest,
    entry: InvoiceEntry,
    preview: Preview | None = None,
    editing: Invoice | None = None,
) -> HttpResponse:
    context = {"entry": entry, "preview": preview, "seller": entry.seller, "editing": editing}
    return render(request, "invoices/new.html", context)


def _handle_entry(
    request: HttpRequest,
    entry: InvoiceEntry,
    save: Callable[[str], tuple[Invoice, str]],
    intents: frozenset[str],
    editing: Invoice | None = None,
) -> HttpResponse:
    """The POST side of the issue and edit forms: add a line, recalculate, or save."""
    intent = request.POST.get("intent", "preview")
    if intent == "add_line":
        entry.add_line()
        return _render_entry(request, entry, editing=editing)
    preview = entry.preview()
    if intent not in intents:
        entry.show(preview.violations, live=True)
    elif not entry.is_valid() or preview.violations:
        entry.show(preview.violations)
    else:
        try:
            invoice, message = save(intent)
        except (RuleViolation, RuleViolations) as error:
            entry.show(violations_of(error))
        else:
            messages.success(request, message)
            return redirect("invoices:detail", uid=invoice.uid)
    return _render_entry(request, entry, preview, editing)


@login_required
@require_http_methods(["GET", "POST"])
def new_invoice(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    sellers = _sellers(actor)
    if request.method == "GET":
        return _render_entry(request, InvoiceEntry(sellers))
    entry = InvoiceEntry(sellers, request.POST)
    return _handle_entry(request, entry, lambda intent: _save(actor, entry, intent), SAVE_INTENTS)


EDIT_INTENTS = frozenset({"draft", "submit"})


@login_required
@require_http_methods(["GET", "POST"])
def edit_draft(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    """Correct a draft, typically one a reviewer sent back; it is issued from its detail page."""
    actor = _actor(request)
    invoice = get_invoice_for_actor(actor, str(uid))
    if invoice.status != InvoiceStatus.DRAFT or not actor.can(
        Action.DRAFT_INVOICE, invoice.seller_id
    ):
        raise PermissionDenied(
            _("Only drafts can be edited, by users who may draft for the seller.")
        )
    sellers = Organisation.objects.filter(pk=invoice.seller_id)
    if request.method == "GET":
        return _render_entry(
            request, InvoiceEntry(sellers, entry_data_for(invoice)), editing=invoice
        )
    entry = InvoiceEntry(sellers, request.POST)

    def save(intent: str) -> tuple[Invoice, str]:
        updated = actions.do_update_draft(actor, invoice, entry.draft(), submit=intent == "submit")
        return updated, _("Draft sent for review.") if intent == "submit" else _("Draft saved.")

    return _handle_entry(request, entry, save, EDIT_INTENTS, editing=invoice)


@login_required
@require_POST
def preview(request: HttpRequest) -> HttpResponse:
    """Live computation for the issue form (htmx); nothing is written."""
    entry = InvoiceEntry(_sellers(_actor(request)), request.POST)
    result = entry.preview()
    entry.show(result.violations, live=True)
    # On the edit page the preview must not swap in the "issue now" buttons of a new invoice.
    editing = bool(request.POST.get("editing"))
    context = {"entry": entry, "preview": result, "seller": entry.seller, "editing": editing}
    return render(request, "invoices/_preview.html", context)


@login_required
@require_POST
def add_line(request: HttpRequest) -> HttpResponse:
    """A blank line for the issue form (htmx), with the formset's new form count."""
    _sellers(_actor(request))
    try:
        count = int(request.POST.get(f"{LINES_PREFIX}-TOTAL_FORMS", "0"))
    except ValueError:
        return HttpResponseBadRequest("bad form count")
    if not 0 <= count < MAX_LINES:
        return HttpResponseBadRequest("bad form count")
    context = {"line": blank_line(count), "position": count + 1, "total_forms": count + 1}
    return render(request, "invoices/_line_added.html", context)


@login_required
@require_GET
def tax_codes(request: HtmxHttpRequest) -> HttpResponse:
    """Tax classification codes (税收分类编码) matching a query: datalist options or a page."""
    fields = [key for key in request.GET if key == "q" or key.endswith("-tax_code")]
    query = request.GET.get(fields[0], "") if fields else ""
    codes = search_tax_codes(query.strip(), limit=20) if query.strip() else []
    template = (
        "invoices/_tax_code_options.html" if _is_partial(request) else "invoices/tax_codes.html"
    )
    response = render(request, template, {"codes": codes, "query": query})
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def line_rates(request: HttpRequest) -> HttpResponse:
    """The rate list of one line, limited to the rates its tax code allows (htmx)."""
    prefix = request.GET.get("prefix", "")
    if not LINE_PREFIX.fullmatch(prefix):
        return HttpResponseBadRequest("bad prefix")
    data = request.GET.copy()
    form = LineForm(data, prefix=prefix)
    allowed = form.allowed_rate_keys()
    if data.get(f"{prefix}-tax_rate", "") not in allowed:
        data[f"{prefix}-tax_rate"] = allowed[0] if len(allowed) == 1 else ""
        form = LineForm(data, prefix=prefix)
    response = render(request, "invoices/_rate_select.html", {"line": form})
    # Recompute the preview once the new rate is in place.
    response["HX-Trigger-After-Settle"] = "line-changed"
    return response


# --- Review queue and draft transitions ----------------------------------------------------


@login_required
@require_GET
def review_queue(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    pending = (
        visible_invoices(actor)
        .filter(
            status=InvoiceStatus.PENDING_REVIEW,
            seller_id__in=actor.organisation_ids(Action.REVIEW_INVOICE),
        )
        .order_by("created_at", "id")
    )
    return render(
        request, "invoices/review.html", {"invoices": pending, "reject_form": RejectForm()}
    )


def _transition(request: HttpRequest, uid: uuid.UUID, verb: str) -> HttpResponse:
    actor = _actor(request)
    invoice = get_invoice_for_actor(actor, str(uid))
    try:
        if verb == "submit":
            actions.do_submit_for_review(actor, invoice)
            messages.success(request, _("Draft sent for review."))
        elif verb == "issue":
            invoice = actions.do_issue_invoice(actor, invoice)
            messages.success(request, _("Invoice %(number)s issued.") % {"number": invoice.number})
        elif verb == "approve":
            invoice = actions.do_approve_invoice(actor, invoice)
            messages.success(
                request, _("Approved: invoice %(number)s issued.") % {"number": invoice.number}
            )
        else:
            actions.do_reject_invoice(actor, invoice, request.POST.get("reason", ""))
            messages.success(request, _("Draft sent back to its author."))
    except (RuleViolation, RuleViolations) as error:
        _show_refusal(request, error)
    return redirect(_next_or(request, invoice_url(invoice)))


def invoice_url(invoice: Invoice) -> str:
    return reverse("invoices:detail", kwargs={"uid": invoice.uid})


@login_required
@require_POST
def submit_draft(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    return _transition(request, uid, "submit")


@login_required
@require_POST
def issue_draft(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    return _transition(request, uid, "issue")


@login_required
@require_POST
def approve(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    return _transition(request, uid, "approve")


@login_required
@require_POST
def reject(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    return _transition(request, uid, "reject")


# --- List and detail ---------------------------------------------------------------------


@login_required
@require_GET
def invoice_list(request: HtmxHttpRequest) -> HttpResponse:
    actor = _actor(request)
    require_invoice_reader(actor)
    filters = ListFilterForm(request.GET)
    invoices = filter_invoices(visible_invoices(actor), **filters.filters()).order_by(
        "-created_at", "-id"
    )
    page = Paginator(invoices, PAGE_SIZE).get_page(request.GET.get("page"))
    partial = _is_partial(request)
    template = "invoices/_invoice_table.html" if partial else "invoices/list.html"
    response = render(request, template, {"filters": filters, "page": page})
    if partial:
        # The address bar gets the filters actually set, not every empty field of the form.
        query = urlencode([(key, request.GET[key]) for key in request.GET if request.GET[key]])
        response["HX-Push-Url"] = f"{request.path}?{query}" if query else request.path
    patch_vary_headers(response, ["HX-Request"])
    return response


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@login_required
@require_GET
def export_invoices(request: HttpRequest) -> FileResponse:
    """The filtered list as an Excel workbook, built in a temporary file and then streamed.

    The browser's download progress is the progress indicator; exports are audited once per
    organisation whose invoices the actor may view.
    """
    actor = _actor(request)
    filters = ListFilterForm(request.GET).filters()
    invoices = filter_invoices(visible_invoices(actor), **filters)
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Not a context manager: FileResponse closes (and so deletes) the file once it is sent.
    output = tempfile.TemporaryFile(dir=settings.VAR_DIR)  # noqa: SIM115
    rows = write_invoices_xlsx(invoices, output)
    actions.do_record_invoice_export(
        actor,
        actor.organisation_ids(Action.VIEW_INVOICES),
        {name: str(value) for name, value in filters.items()},
        rows,
    )
    output.seek(0)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    return FileResponse(
        output, as_attachment=True, filename=f"invoices-{stamp}.xlsx", content_type=XLSX
    )


@login_required
@require_GET
def invoice_detail(request: HttpRequest, uid: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invoice = get_invoice_for_actor(actor, str(uid))
    seller_id = invoice.seller_id
    is_draft = invoice.status == InvoiceStatus.DRAFT
    context = {
        "invoice": invoice,
        "lines": list(invoice.lines.all()),
        "may_submit": is_draft and actor.can(Action.DRAFT_INVOICE, seller_id),
        "may_deliver": not is_draft and actor.can(Action.DELIVER_INVOICE, seller_id),
        "may_edit": is_draft and actor.can(Action.DRAFT_INVOICE, seller_id),
        "may_issue": is_draft
        and actor.can(Action.ISSUE_INVOICE, seller_id)
        and not invoice.seller.requires_dual_review,
        "may_review": invoice.status == InvoiceStatus.PENDING_REVIEW
        and actor.can(Action.REVIEW_INVOICE, seller_id),
        "reject_form": RejectForm(),
    }
    # Imported here: the red-letter views import this module's helpers.
    from piaotong.invoices.views_redletter import detail_context

    context |= detail_context(actor, invoice)
    return render(request, "invoices/detail.html", context)
