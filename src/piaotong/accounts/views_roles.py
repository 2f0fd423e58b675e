"""Web UI of permission changes (权限变更审批) and the periodic access review (定期权限审查).

Pages per organisation under /accounts/roles/<organisation id>/: the pending requests with their
decisions, the request form, the history of decided requests, and the access review with its
CSV export and the "request revocation of dormant access" button. Every view builds the actor,
asks an access helper below (404 for an organisation or request the actor may not act on, so
other organisations' requests stay invisible), calls at most one action and renders or
redirects with a message (POST, redirect, GET).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from piaotong.accounts import role_requests
from piaotong.accounts.access import Actor, actor_for_request
from piaotong.accounts.access_review import access_review_table, build_access_review
from piaotong.accounts.choices import Role, RoleChange, RoleChangeStatus
from piaotong.accounts.forms_roles import RejectRoleChangeForm, RoleChangeForm
from piaotong.accounts.models import Organisation, RoleChangeRequest
from piaotong.accounts.permissions import Action
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.spreadsheet import csv_lines

PAGE_SIZE = 50
ACCESS_ACTIONS = (
    Action.REQUEST_ROLE_CHANGE,
    Action.APPROVE_ROLE_CHANGE,
    Action.VIEW_ACCESS_REVIEW,
)

# --- Access helpers ----------------------------------------------------------------------


def actor_of(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    assert actor is not None  # every view here is behind login_required
    return actor


def may_manage_access(actor: Actor) -> bool:
    """Whether any page here is open to the actor (the navigation shows the link then)."""
    return any(actor.organisation_ids(action) for action in ACCESS_ACTIONS)


def get_organisation_for_access(
    actor: Actor, organisation_id: int, *actions: Action
) -> Organisation:
    """The organisation if the actor may do one of `actions` there; otherwise 404."""
    if not any(actor.can(action, organisation_id) for action in actions):
        raise Http404("No such organisation")
    return Organisation.objects.get(pk=organisation_id)


def get_role_request_for_actor(actor: Actor, pk: int, action: Action) -> RoleChangeRequest:
    """A request of an organisation where the actor may do `action`; otherwise 404."""
    found = (
        RoleChangeRequest.objects.filter(pk=pk, organisation_id__in=actor.organisation_ids(action))
        .select_related("organisation", "user")
        .first()
    )
    if found is None:
        raise Http404("No such request")
    return found


@dataclass(frozen=True)
class PendingItem:
    """A pending request with what the viewing admin may do about it."""

    request: RoleChangeRequest
    may_decide: bool
    may_withdraw: bool


def _pending_items(actor: Actor, organisation: Organisation) -> list[PendingItem]:
    # Mirrors the four-eyes rule of the actions so that nobody is offered a button the action
    # would refuse; the actions remain the authority.
    assert actor.user is not None
    me = actor.user
    may_approve = actor.can(Action.APPROVE_ROLE_CHANGE, organisation.pk)
    may_request = actor.can(Action.REQUEST_ROLE_CHANGE, organisation.pk)
    pending = (
        RoleChangeRequest.objects.filter(organisation=organisation, status=RoleChangeStatus.PENDING)
        .select_related("user", "requested_by")
        .order_by("requested_at", "pk")
    )
    return [
        PendingItem(
            request=item,
            may_decide=may_approve and not item.is_requested_by(me) and not item.concerns(me),
            may_withdraw=may_request and item.is_requested_by(me),
        )
        for item in pending
    ]


def tabs_context(actor: Actor, organisation: Organisation) -> dict[str, object]:
    """The organisation and which of its pages the actor may open."""
    return {
        "organisation": organisation,
        "may_request": actor.can(Action.REQUEST_ROLE_CHANGE, organisation.pk),
        "may_see_pending": actor.can(Action.REQUEST_ROLE_CHANGE, organisation.pk)
        or actor.can(Action.APPROVE_ROLE_CHANGE, organisation.pk),
        "may_review": actor.can(Action.VIEW_ACCESS_REVIEW, organisation.pk),
    }


def _landing(actor: Actor, organisation: Organisation) -> str:
    if tabs_context(actor, organisation)["may_see_pending"]:
        return reverse("accounts:role_requests", args=[organisation.pk])
    return reverse("accounts:access_review", args=[organisation.pk])


def show_refusal(request: HttpRequest, error: RuleViolation | RuleViolations) -> None:
    for violation in error.violations if isinstance(error, RuleViolations) else [error]:
        messages.error(request, violation.text())


# --- Organisations, pending requests, the request form ------------------------------------


@login_required
@require_GET
def roles_home(request: HttpRequest) -> HttpResponse:
    """The organisations whose roles the user manages or reviews; straight in if only one."""
    actor = actor_of(request)
    org_ids = {org_id for action in ACCESS_ACTIONS for org_id in actor.organisation_ids(action)}
    if not org_ids:
        raise PermissionDenied(_("You manage or review roles in no organisation."))
    organisations = list(Organisation.objects.filter(pk__in=org_ids))
    if len(organisations) == 1:
        return redirect(_landing(actor, organisations[0]))
    links = [(org, _landing(actor, org)) for org in organisations]
    return render(request, "accounts/roles/index.html", {"links": links})


@login_required
@require_GET
def role_requests_pending(request: HttpRequest, organisation_id: int) -> HttpResponse:
    actor = actor_of(request)
    organisation = get_organisation_for_access(
        actor, organisation_id, Action.REQUEST_ROLE_CHANGE, Action.APPROVE_ROLE_CHANGE
    )
    context = tabs_context(actor, organisation) | {
        "items": _pending_items(actor, organisation),
        "reject_form": RejectRoleChangeForm(),
    }
    return render(request, "accounts/roles/pending.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def role_request_new(request: HttpRequest, organisation_id: int) -> HttpResponse:
    actor = actor_of(request)
    organisation = get_organisation_for_access(actor, organisation_id, Action.REQUEST_ROLE_CHANGE)
    form = RoleChangeForm(organisation, request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            role_requests.do_request_role_change(
                actor,
                organisation,
                form.cleaned_data["user"],
                Role(form.cleaned_data["role"]),
                RoleChange(form.cleaned_data["change"]),
                form.cleaned_data["reason"],
            )
        except (RuleViolation, RuleViolations) as error:
            form.show(error)
        else:
            messages.success(request, _("Request sent: another admin must approve it."))
            return redirect("accounts:role_requests", organisation_id=organisation.pk)
    context = tabs_context(actor, organisation) | {"form": form}
    return render(request, "accounts/roles/new.html", context)


# --- Decisions -----------------------------------------------------------------------------


def _back_to_pending(change_request: RoleChangeRequest) -> HttpResponse:
    return redirect("accounts:role_requests", organisation_id=change_request.organisation_id)


@login_required
@require_POST
def role_request_approve(request: HttpRequest, pk: int) -> HttpResponse:
    actor = actor_of(request)
    change_request = get_role_request_for_actor(actor, pk, Action.APPROVE_ROLE_CHANGE)
    try:
        role_requests.do_approve_role_change(actor, change_request, request.POST.get("note", ""))
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, _("Approved: the change is in effect."))
    return _back_to_pending(change_request)


@login_required
@require_POST
def role_request_reject(request: HttpRequest, pk: int) -> HttpResponse:
    actor = actor_of(request)
    change_request = get_role_request_for_actor(actor, pk, Action.APPROVE_ROLE_CHANGE)
    try:
        role_requests.do_reject_role_change(actor, change_request, request.POST.get("note", ""))
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, _("Rejected: nothing changes."))
    return _back_to_pending(change_request)


@login_required
@require_POST
def role_request_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    actor = actor_of(request)
    change_request = get_role_request_for_actor(actor, pk, Action.REQUEST_ROLE_CHANGE)
    try:
        role_requests.do_withdraw_role_change(actor, change_request)
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, _("Request withdrawn."))
    return _back_to_pending(change_request)


# --- History and access review -------------------------------------------------------------


@login_required
@require_GET
def role_request_history(request: HttpRequest, organisation_id: int) -> HttpResponse:
    actor = actor_of(request)
    organisation = get_organisation_for_access(actor, organisation_id, Action.VIEW_ACCESS_REVIEW)
    decided = (
        RoleChangeRequest.objects.filter(organisation=organisation)
        .exclude(status=RoleChangeStatus.PENDING)
        .select_related("user", "requested_by", "decided_by")
        .order_by("-decided_at", "-pk")
    )
    page = Paginator(decided, PAGE_SIZE).get_page(request.GET.get("page"))
    context = tabs_context(actor, organisation) | {"page": page}
    return render(request, "accounts/roles/history.html", context)


@login_required
@require_GET
def access_review(request: HttpRequest, organisation_id: int) -> HttpResponse:
    actor = actor_of(request)
    organisation = get_organisation_for_access(actor, organisation_id, Action.VIEW_ACCESS_REVIEW)
    context = tabs_context(actor, organisation) | {"review": build_access_review(organisation)}
    return render(request, "accounts/roles/review.html", context)


@login_required
@require_GET
def access_review_csv(request: HttpRequest, organisation_id: int) -> StreamingHttpResponse:
    actor = actor_of(request)
    organisation = get_organisation_for_access(actor, organisation_id, Action.VIEW_ACCESS_REVIEW)
    review = role_requests.do_export_access_review(actor, organisation)
    header, rows = access_review_table(review)
    response = StreamingHttpResponse(csv_lines(header, rows), content_type="text/csv")
    day = timezone.localdate(review.generated_at).strftime("%Y%m%d")
    response["Content-Disposition"] = (
        f'attachment; filename="access-review-{organisation.tax_id}-{day}.csv"'
    )
    return response


@login_required
@require_POST
def revoke_dormant(request: HttpRequest, organisation_id: int) -> HttpResponse:
    actor = actor_of(request)
    organisation = get_organisation_for_access(actor, organisation_id, Action.REQUEST_ROLE_CHANGE)
    created = role_requests.do_request_dormant_revocations(actor, organisation)
    if created:
        messages.success(
            request,
            ngettext(
                "%(count)s revocation requested; another admin must approve it.",
                "%(count)s revocations requested; another admin must approve them.",
                len(created),
            )
            % {"count": len(created)},
        )
    else:
        messages.info(request, _("No dormant access without a pending request was found."))
    return redirect("accounts:role_requests", organisation_id=organisation.pk)
