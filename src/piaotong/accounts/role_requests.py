"""Permission changes under maker-checker (权限变更审批) and the access review's follow-up.

Terms: a permission change request (权限变更申请, `RoleChangeRequest`) asks to grant or revoke one
role of one user in one organisation. The maker (申请人) is the admin who asks; the checker
(审批人) is a different admin, who approves or rejects it. Nobody decides their own request or a
request about themself, so two people stand behind every change of who may do what.

Every action checks the permission, then the rules (all violations at once), then writes its
rows and audit entries in one transaction; approving applies the change to `Membership` in that
same transaction. `accounts.actions.do_grant_role` remains only for bootstrapping first admins.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.access_review import AccessReview, build_access_review
from piaotong.accounts.choices import ORGANISATION_ROLES, Role, RoleChange, RoleChangeStatus
from piaotong.accounts.models import Membership, Organisation, RoleChangeRequest, User
from piaotong.accounts.permissions import Action
from piaotong.ledger.actions import record_audit, record_audits
from piaotong.lib.errors import RuleViolation, raise_all

MAX_TEXT = 500


def require_person(actor: Actor, action: Action, organisation_id: int) -> User:
    """The user behind the actor, if they may do `action` there: decisions need a person."""
    if actor.user is None or not actor.can(action, organisation_id):
        raise PermissionDenied(f"{actor.label} may not {action} in organisation {organisation_id}")
    return actor.user


def too_long(field: str, text: str) -> RuleViolation | None:
    if len(text.strip()) <= MAX_TEXT:
        return None
    return RuleViolation(
        field,
        "too_long",
        _("Keep it to %(limit)s characters or fewer; it has %(length)s."),
        {"limit": MAX_TEXT, "length": len(text.strip())},
    )


def required_text(field: str, text: str, missing: str | Promise) -> RuleViolation | None:
    if not text.strip():
        return RuleViolation(field, "required", missing)
    return too_long(field, text)


def describe_role(role: str) -> str | Promise:
    """The role's name, translated when the message is shown rather than when raised."""
    return Role(role).label if role in Role.values else role


def _holds(user: User, organisation_id: int, role: str) -> bool:
    return Membership.objects.filter(user=user, organisation_id=organisation_id, role=role).exists()


def _change_violations(
    organisation_id: int, user: User, role: str, change: str
) -> list[RuleViolation]:
    """Why the change would make no sense (nothing if it does): checked when asked, and again
    when approved because roles may have changed in between."""
    if role not in ORGANISATION_ROLES:
        return [
            RuleViolation(
                "role",
                "role_not_grantable",
                _(
                    "Organisation admins do not manage the role %(role)s; choose one of the organisation's own roles."
                ),
                {"role": describe_role(role)},
            )
        ]
    holds = _holds(user, organisation_id, role)
    if change == RoleChange.GRANT and holds:
        return [
            RuleViolation(
                "role",
                "already_held",
                _("%(user)s already holds the role %(role)s; there is nothing to grant."),
                {"user": user.username, "role": describe_role(role)},
            )
        ]
    if change == RoleChange.REVOKE and not holds:
        return [
            RuleViolation(
                "role",
                "not_held",
                _("%(user)s does not hold the role %(role)s; there is nothing to revoke."),
                {"user": user.username, "role": describe_role(role)},
            )
        ]
    if change == RoleChange.GRANT and not user.is_active:
        return [
            RuleViolation(
                "user",
                "user_inactive",
                _("%(user)s's account is deactivated; reactivate it before granting roles."),
                {"user": user.username},
            )
        ]
    return []


def _pending_exists(user: User, role: str) -> RuleViolation:
    return RuleViolation(
        "role",
        "pending_exists",
        _(
            "A request about %(user)s's role %(role)s already waits for approval; have it decided or withdrawn first."
        ),
        {"user": user.username, "role": describe_role(role)},
    )


def _has_pending(organisation: Organisation, user: User, role: str) -> bool:
    return RoleChangeRequest.objects.filter(
        organisation=organisation, user=user, role=role, status=RoleChangeStatus.PENDING
    ).exists()


def _details(change_request: RoleChangeRequest, **extra: Any) -> dict[str, Any]:
    return {
        "request": change_request.pk,
        "role": change_request.role,
        "change": change_request.change,
    } | extra


def _target(change_request: RoleChangeRequest) -> str:
    return f"user:{change_request.user.username}"


def do_request_role_change(
    actor: Actor,
    organisation: Organisation,
    user: User,
    role: Role,
    change: RoleChange,
    reason: str,
) -> RoleChangeRequest:
    """Ask for a role to be granted or revoked; it takes effect once another admin approves."""
    requester = require_person(actor, Action.REQUEST_ROLE_CHANGE, organisation.pk)
    missing = _("Say why this change is needed, so the approving admin can judge it.")
    violations = [v for v in [required_text("reason", reason, missing)] if v]
    violations += _change_violations(organisation.pk, user, role, change)
    if not violations and _has_pending(organisation, user, role):
        violations.append(_pending_exists(user, role))
    raise_all(violations)
    with transaction.atomic():
        try:
            # A savepoint: a concurrent request about the same role loses on the unique index.
            with transaction.atomic():
                change_request = RoleChangeRequest.objects.create(
                    organisation=organisation,
                    user=user,
                    role=role,
                    change=change,
                    reason=reason.strip(),
                    requested_by=requester,
                )
        except IntegrityError:
            raise _pending_exists(user, role) from None
        record_audit(
            actor,
            "role_change.requested",
            _target(change_request),
            organisation.pk,
            _details(change_request, reason=change_request.reason),
        )
    return change_request


def _locked(change_request: RoleChangeRequest) -> RoleChangeRequest:
    return (
        RoleChangeRequest.objects.select_for_update()
        .select_related("user", "organisation")
        .get(pk=change_request.pk)
    )


def _refuse_if_decided(change_request: RoleChangeRequest, wanted: RoleChangeStatus) -> None:
    if not change_request.can_transition_to(wanted):
        raise RuleViolation(
            "status",
            "already_decided",
            _(
                "This request is already %(status)s and a decision is final; file a new request if a change is still needed."
            ),
            {"status": change_request.get_status_display()},
        )


def _check_checker(change_request: RoleChangeRequest, checker: User) -> None:
    """Four eyes (双人审批): the checker is neither the maker nor the person concerned."""
    if change_request.is_requested_by(checker):
        raise RuleViolation(
            "decided_by",
            "self_approval",
            _(
                "Nobody decides their own request: another organisation admin must approve or reject it. Withdraw it if it is no longer needed."
            ),
        )
    if change_request.concerns(checker):
        raise RuleViolation(
            "decided_by",
            "self_elevation",
            _(
                "Nobody decides a change of their own roles: another organisation admin must approve or reject it."
            ),
        )


def _apply(change_request: RoleChangeRequest) -> str:
    """Make the membership match the approved request; returns the audit action for it."""
    user, org_id, role = change_request.user, change_request.organisation_id, change_request.role
    raise_all(_change_violations(org_id, user, role, change_request.change))
    if change_request.is_grant:
        Membership.objects.create(user=user, organisation_id=org_id, role=role)
        return "role.granted"
    Membership.objects.filter(user=user, organisation_id=org_id, role=role).delete()
    return "role.revoked"


def _decide(
    change_request: RoleChangeRequest, status: RoleChangeStatus, by: User | None, note: str
) -> None:
    change_request.status = status
    change_request.decided_by = by
    change_request.decided_at = timezone.now()
    change_request.decision_note = note.strip()
    change_request.save(update_fields=["status", "decided_by", "decided_at", "decision_note"])


def do_approve_role_change(
    actor: Actor, change_request: RoleChangeRequest, note: str = ""
) -> RoleChangeRequest:
    """Approve a pending request as a second admin, which applies the change."""
    checker = require_person(actor, Action.APPROVE_ROLE_CHANGE, change_request.organisation_id)
    if violation := too_long("decision_note", note):
        raise violation
    with transaction.atomic():
        change_request = _locked(change_request)
        _refuse_if_decided(change_request, RoleChangeStatus.APPROVED)
        _check_checker(change_request, checker)
        applied = _apply(change_request)
        _decide(change_request, RoleChangeStatus.APPROVED, checker, note)
        target, org_id = _target(change_request), change_request.organisation_id
        record_audits(
            actor,
            [
                (
                    "role_change.approved",
                    target,
                    org_id,
                    _details(change_request, note=change_request.decision_note),
                ),
                (applied, target, org_id, {"role": change_request.role}),
            ],
        )
    return change_request


def do_reject_role_change(
    actor: Actor, change_request: RoleChangeRequest, note: str
) -> RoleChangeRequest:
    """Refuse a pending request as a second admin, saying why; nothing changes."""
    checker = require_person(actor, Action.APPROVE_ROLE_CHANGE, change_request.organisation_id)
    missing = _("Say why the request is rejected, so the requester understands the decision.")
    if violation := required_text("decision_note", note, missing):
        raise violation
    with transaction.atomic():
        change_request = _locked(change_request)
        _refuse_if_decided(change_request, RoleChangeStatus.REJECTED)
        _check_checker(change_request, checker)
        _decide(change_request, RoleChangeStatus.REJECTED, checker, note)
        record_audit(
            actor,
            "role_change.rejected",
            _target(change_request),
            change_request.organisation_id,
            _details(change_request, note=change_request.decision_note),
        )
    return change_request


def do_withdraw_role_change(actor: Actor, change_request: RoleChangeRequest) -> RoleChangeRequest:
    """Take back one's own pending request before anyone decides it."""
    maker = require_person(actor, Action.REQUEST_ROLE_CHANGE, change_request.organisation_id)
    with transaction.atomic():
        change_request = _locked(change_request)
        _refuse_if_decided(change_request, RoleChangeStatus.WITHDRAWN)
        if not change_request.is_requested_by(maker):
            raise RuleViolation(
                "requested_by",
                "not_requester",
                _(
                    "Only the admin who made a request may withdraw it; reject it instead, with a reason."
                ),
            )
        _decide(change_request, RoleChangeStatus.WITHDRAWN, None, "")
        record_audit(
            actor,
            "role_change.withdrawn",
            _target(change_request),
            change_request.organisation_id,
            _details(change_request),
        )
    return change_request


def do_request_dormant_revocations(
    actor: Actor, organisation: Organisation
) -> list[RoleChangeRequest]:
    """Ask to revoke every dormant role of the organisation that no request covers yet.

    The requests wait for a second admin's approval like any other.
    """
    requester = require_person(actor, Action.REQUEST_ROLE_CHANGE, organisation.pk)
    review = build_access_review(organisation)
    dormant = [r for r in review.dormant if r.pending is None and r.role in ORGANISATION_ROLES]
    reason = gettext(
        "Dormant access: no login for %(days)s days or more (access review of %(date)s)."
    ) % {"days": review.dormant_days, "date": timezone.localdate(review.generated_at)}
    created: list[RoleChangeRequest] = []
    with transaction.atomic():
        for row in dormant:
            try:
                with transaction.atomic():
                    created.append(
                        RoleChangeRequest.objects.create(
                            organisation=organisation,
                            user=row.membership.user,
                            role=row.role,
                            change=RoleChange.REVOKE,
                            reason=reason,
                            requested_by=requester,
                        )
                    )
            except IntegrityError:
                continue  # someone asked about this role since the review was built
        if created:
            record_audits(
                actor,
                [
                    (
                        "role_change.requested",
                        _target(request),
                        organisation.pk,
                        _details(request, reason=reason, dormant=True),
                    )
                    for request in created
                ],
            )
    return created


def do_export_access_review(actor: Actor, organisation: Organisation) -> AccessReview:
    """The access review for download; exporting who holds what is itself audited."""
    require_person(actor, Action.VIEW_ACCESS_REVIEW, organisation.pk)
    review = build_access_review(organisation)
    with transaction.atomic():
        record_audit(
            actor,
            "access_review.exported",
            f"organisation:{organisation.tax_id}",
            organisation.pk,
            {"memberships": len(review.rows), "dormant": len(review.dormant)},
        )
    return review
