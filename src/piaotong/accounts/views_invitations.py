"""Web UI of invitations (邀请用户): inviting, deciding, and the public acceptance page.

Admin pages live beside the permission changes under /accounts/roles/<organisation id>/
invitations/ and follow the same shape (`views_roles`): access helper (404 for another
organisation's invitation), one action, redirect with a message. Approving is the exception:
its response shows the acceptance link once and is never redirected to, so it cannot be
reloaded from history. The acceptance page /accounts/invitations/accept/<token>/ is public.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from piaotong.accounts import invitations, throttle
from piaotong.accounts.access import Actor
from piaotong.accounts.choices import InvitationStatus, Role
from piaotong.accounts.forms_invitations import AcceptInvitationForm, InvitationForm
from piaotong.accounts.forms_roles import RejectRoleChangeForm
from piaotong.accounts.models import Invitation, Organisation
from piaotong.accounts.permissions import Action
from piaotong.accounts.views_roles import (
    actor_of,
    get_organisation_for_access,
    show_refusal,
    tabs_context,
)
from piaotong.lib.errors import RuleViolation, RuleViolations


def get_invitation_for_actor(actor: Actor, pk: int, action: Action) -> Invitation:
    """An invitation of an organisation where the actor may do `action`; otherwise 404."""
    found = (
        Invitation.objects.filter(pk=pk, organisation_id__in=actor.organisation_ids(action))
        .select_related("organisation", "requested_by")
        .first()
    )
    if found is None:
        raise Http404("No such invitation")
    return found


def _open_invitations(organisation: Organisation) -> list[Invitation]:
    return list(
        Invitation.objects.filter(
            organisation=organisation,
            status__in=[InvitationStatus.PENDING, InvitationStatus.APPROVED],
        )
        .select_related("requested_by", "decided_by")
        .order_by("requested_at", "pk")
    )


@login_required
@require_http_methods(["GET", "POST"])
def invitations_page(request: HttpRequest, organisation_id: int) -> HttpResponse:
    """Open invitations with their decisions, and the form to invite someone."""
    actor = actor_of(request)
    organisation = get_organisation_for_access(
        actor, organisation_id, Action.REQUEST_ROLE_CHANGE, Action.APPROVE_ROLE_CHANGE
    )
    may_invite = actor.can(Action.REQUEST_ROLE_CHANGE, organisation.pk)
    form = InvitationForm(request.POST if request.method == "POST" and may_invite else None)
    if form.is_valid():
        try:
            invitations.do_request_invitation(
                actor,
                organisation,
                email=form.cleaned_data["email"],
                full_name=form.cleaned_data["full_name"],
                role=Role(form.cleaned_data["role"]),
                reason=form.cleaned_data["reason"],
            )
        except (RuleViolation, RuleViolations) as error:
            form.show(error)
        else:
            messages.success(
                request, _("Invitation sent for approval: another admin must approve it.")
            )
            return redirect("accounts:invitations", organisation_id=organisation.pk)
    assert actor.user is not None
    context = tabs_context(actor, organisation) | {
        "form": form,
        "may_invite": may_invite,
        "may_approve": actor.can(Action.APPROVE_ROLE_CHANGE, organisation.pk),
        "me": actor.user,
        "invitations": _open_invitations(organisation),
        "reject_form": RejectRoleChangeForm(),
    }
    return render(request, "accounts/roles/invitations.html", context)


def _back(invitation: Invitation) -> HttpResponse:
    return redirect("accounts:invitations", organisation_id=invitation.organisation_id)


@never_cache
@login_required
@require_POST
def invitation_approve(request: HttpRequest, pk: int) -> HttpResponse:
    actor = actor_of(request)
    invitation = get_invitation_for_actor(actor, pk, Action.APPROVE_ROLE_CHANGE)
    try:
        path = invitations.do_approve_invitation(actor, invitation, request.POST.get("note", ""))
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
        return _back(invitation)
    link = request.build_absolute_uri(path)
    email_error = invitations.do_email_invitation(actor, invitation, link)
    context = tabs_context(actor, invitation.organisation) | {
        "invitation": invitation,
        "link": link,
        "email_error": email_error,
    }
    return render(request, "accounts/roles/invitation_link.html", context)


@login_required
@require_POST
def invitation_reject(request: HttpRequest, pk: int) -> HttpResponse:
    actor = actor_of(request)
    invitation = get_invitation_for_actor(actor, pk, Action.APPROVE_ROLE_CHANGE)
    try:
        invitations.do_reject_invitation(actor, invitation, request.POST.get("note", ""))
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, _("Invitation rejected: no link is issued."))
    return _back(invitation)


@login_required
@require_POST
def invitation_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    actor = actor_of(request)
    invitation = get_invitation_for_actor(actor, pk, Action.REQUEST_ROLE_CHANGE)
    try:
        invitations.do_withdraw_invitation(actor, invitation)
    except (RuleViolation, RuleViolations) as error:
        show_refusal(request, error)
    else:
        messages.success(request, _("Invitation withdrawn."))
    return _back(invitation)


# --- The public acceptance page ------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Who invites to which role, and the form to choose a username and password."""
    form = AcceptInvitationForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            invitations.do_accept_invitation(
                token,
                form.cleaned_data["username"],
                form.cleaned_data["password"],
                ip=throttle.client_ip(request),
            )
        except (RuleViolation, RuleViolations) as error:
            form.show(error)
        else:
            messages.success(request, _("Welcome: your account is ready. Log in to continue."))
            return redirect("accounts:login")
    invitation = invitations.find_invitation(token)
    status = 200 if invitation is not None else 404
    context = {"form": form, "invitation": invitation}
    return render(request, "accounts/invitation_accept.html", context, status=status)
