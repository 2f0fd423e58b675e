"""Web UI of registration (单位注册): the public application form, and the tax officer's review
pages (注册审核) with the documents' download.

The application page is open to anyone; it is throttled per IP address by the action. The
review pages ask `accounts.access` for what the officer may see: 404 for anything else.
"""

from __future__ import annotations

from dataclasses import fields

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from piaotong.accounts import registration, throttle
from piaotong.accounts.access import (
    Actor,
    actor_for_request,
    get_document_for_actor,
    get_registration_for_actor,
    registrations_for_actor,
    reviewing_regions,
)
from piaotong.accounts.choices import OrganisationStatus, Role
from piaotong.accounts.forms_registration import ReapplyForm, RegistrationForm, ReviewForm
from piaotong.accounts.models import Membership, Organisation
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation, RuleViolations


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    assert actor is not None  # behind login_required
    return actor


@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    form = RegistrationForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        application = registration.RegistrationApplication(
            **{f.name: data[f.name] for f in fields(registration.RegistrationApplication)}
        )
        try:
            registration.do_apply_for_registration(
                application, form.uploads(), ip=throttle.client_ip(request)
            )
        except (RuleViolation, RuleViolations) as error:
            form.show(error)
        else:
            return redirect("accounts:register_done")
    return render(request, "accounts/registration/apply.html", {"form": form})


@require_GET
def register_done(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/registration/done.html")


@login_required
@require_http_methods(["GET", "POST"])
def reapply(request: HttpRequest, organisation_id: int) -> HttpResponse:
    """A rejected applicant's admin applies again with corrected documents."""
    actor = _actor(request)
    organisation = Organisation.objects.filter(
        pk=organisation_id, memberships__user=actor.user, memberships__role=Role.ORG_ADMIN
    ).first()
    if organisation is None:
        raise Http404
    form = ReapplyForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            registration.do_reapply_for_registration(
                actor,
                organisation,
                form.uploads(),
                form.cleaned_data["applicant_note"],
                ip=throttle.client_ip(request),
            )
        except (RuleViolation, RuleViolations) as error:
            form.show(error)
        else:
            messages.success(request, _("Application sent again; the tax bureau will review it."))
            return redirect("invoices:dashboard")
    context = {"form": form, "organisation": organisation}
    return render(request, "accounts/registration/reapply.html", context)


@login_required
@require_GET
def registrations(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    if not reviewing_regions(actor):
        raise PermissionDenied(_("You review registrations for no tax bureau."))
    pending = (
        registrations_for_actor(actor)
        .filter(status=OrganisationStatus.PENDING)
        .annotate(document_count=Count("documents"))
        .order_by("created_at", "pk")
    )
    return render(request, "accounts/registration/list.html", {"pending": pending})


@login_required
@require_GET
def registration_detail(request: HttpRequest, organisation_id: int) -> HttpResponse:
    organisation = get_registration_for_actor(_actor(request), organisation_id)
    admins = Membership.objects.filter(
        organisation=organisation, role=Role.ORG_ADMIN
    ).select_related("user")
    rejections = AuditEntry.objects.filter(
        organisation_id=organisation.pk, action="registration.rejected"
    ).order_by("seq")
    context = {
        "organisation": organisation,
        "rejections": rejections,
        "documents": organisation.documents.order_by("-uploaded_at", "-pk"),
        "admins": [m.user for m in admins],
        "form": ReviewForm(),
    }
    return render(request, "accounts/registration/detail.html", context)


def _decide(request: HttpRequest, organisation_id: int, approve: bool) -> HttpResponse:
    actor = _actor(request)
    organisation = get_registration_for_actor(actor, organisation_id)
    note = request.POST.get("note", "")
    try:
        if approve:
            registration.do_approve_registration(actor, organisation, note)
        else:
            registration.do_reject_registration(actor, organisation, note)
    except RuleViolation as violation:
        messages.error(request, violation.text())
        return redirect("accounts:registration_detail", organisation_id=organisation.pk)
    if approve:
        messages.success(request, _("Registration approved: the organisation may issue invoices."))
    else:
        messages.success(request, _("Registration rejected; the applicant sees your reason."))
    return redirect("accounts:registrations")


@login_required
@require_POST
def registration_approve(request: HttpRequest, organisation_id: int) -> HttpResponse:
    return _decide(request, organisation_id, approve=True)


@login_required
@require_POST
def registration_reject(request: HttpRequest, organisation_id: int) -> HttpResponse:
    return _decide(request, organisation_id, approve=False)


@login_required
@require_GET
def registration_document(request: HttpRequest, document_id: int) -> FileResponse:
    actor = _actor(request)
    document = get_document_for_actor(actor, document_id)
    registration.do_record_document_download(actor, document)
    response = FileResponse(
        document.file.open("rb"),
        as_attachment=True,
        filename=document.original_name,
        content_type=document.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
