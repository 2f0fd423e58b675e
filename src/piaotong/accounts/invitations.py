"""Invitations of new users (邀请用户) under maker-checker.

Terms: an invitation (邀请, `Invitation`) asks a person without an account to join an
organisation in one role. One admin asks (the maker, 申请人); a different admin approves or
rejects it (the checker, 审批人), as for permission changes (`accounts.role_requests`), because
inviting someone is granting a role. Approval issues the acceptance link (邀请链接): a 256-bit
random token shown once to the approver, who passes it on; only its SHA-256 is stored, and the
token is never logged or audited. Accepting (接受邀请) within seven days creates the login and
its membership in one transaction; the link then stops working.
"""

from __future__ import annotations

import hmac
import secrets
import smtplib
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts import throttle
from piaotong.accounts.access import Actor
from piaotong.accounts.actions import Visitor, do_create_user, do_grant_role
from piaotong.accounts.choices import ORGANISATION_ROLES, InvitationStatus, Role
from piaotong.accounts.models import (
    Invitation,
    Membership,
    Organisation,
    User,
    hash_invitation_token,
)
from piaotong.accounts.permissions import Action
from piaotong.accounts.role_requests import describe_role, require_person, required_text, too_long
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolation, raise_all

LINK_VALIDITY = timedelta(days=7)

INVALID_LINK = _(
    "This invitation link is not valid or has expired. Ask the organisation's admin for a new invitation."
)


def _details(invitation: Invitation, **extra: object) -> dict[str, object]:
    return {"invitation": invitation.pk, "role": invitation.role, "email": invitation.email} | extra


def _target(invitation: Invitation) -> str:
    return f"invitation:{invitation.pk}"


def _already_member(organisation_id: int, email: str) -> RuleViolation | None:
    if not Membership.objects.filter(
        organisation_id=organisation_id, user__email__iexact=email.strip()
    ).exists():
        return None
    return RuleViolation(
        "email",
        "already_member",
        _(
            "Someone with the email %(email)s already works in this organisation; request a role change for them instead."
        ),
        {"email": email.strip()},
    )


def _open_exists(email: str) -> RuleViolation:
    return RuleViolation(
        "email",
        "invitation_open",
        _(
            "An invitation for %(email)s is already waiting for approval or acceptance; have it decided, withdrawn or let it expire first."
        ),
        {"email": email.strip()},
    )


def _request_violations(
    organisation: Organisation, role: str, email: str, full_name: str, reason: str
) -> list[RuleViolation]:
    violations = [
        required_text("email", email, _("Enter the email address of the person to invite.")),
        required_text("full_name", full_name, _("Enter the full name of the person to invite.")),
        required_text(
            "reason",
            reason,
            _("Say why this person needs the role, so the approving admin can judge it."),
        ),
    ]
    if role not in ORGANISATION_ROLES:
        violations.append(
            RuleViolation(
                "role",
                "role_not_grantable",
                _(
                    "Organisation admins do not manage the role %(role)s; choose one of the organisation's own roles."
                ),
                {"role": describe_role(role)},
            )
        )
    if email.strip():
        violations.append(_already_member(organisation.pk, email))
    return [v for v in violations if v]


def do_request_invitation(
    actor: Actor,
    organisation: Organisation,
    *,
    email: str,
    full_name: str,
    role: Role,
    reason: str,
) -> Invitation:
    """Ask to invite a new user; no link exists until another admin approves."""
    requester = require_person(actor, Action.REQUEST_ROLE_CHANGE, organisation.pk)
    raise_all(_request_violations(organisation, role, email, full_name, reason))
    with transaction.atomic():
        _expire_lapsed(actor, organisation, email.strip(), timezone.now())
        try:
            # A savepoint: a concurrent invitation of the same email loses on the unique index.
            with transaction.atomic():
                invitation = Invitation.objects.create(
                    organisation=organisation,
                    role=role,
                    email=email.strip(),
                    full_name=full_name.strip(),
                    reason=reason.strip(),
                    requested_by=requester,
                )
        except IntegrityError:
            raise _open_exists(email) from None
        record_audit(
            actor,
            "invitation.requested",
            _target(invitation),
            organisation.pk,
            _details(invitation, reason=invitation.reason),
        )
    return invitation


def _expire_lapsed(actor: Actor, organisation: Organisation, email: str, now: datetime) -> None:
    """Close the lapsed links for this email, so that it may be invited again."""
    lapsed = Invitation.objects.select_for_update().filter(
        organisation=organisation,
        email__iexact=email,
        status=InvitationStatus.APPROVED,
        expires_at__lte=now,
    )
    for invitation in lapsed:
        invitation.status = InvitationStatus.EXPIRED
        invitation.save(update_fields=["status"])
        record_audit(
            actor, "invitation.expired", _target(invitation), organisation.pk, _details(invitation)
        )


def _locked(invitation: Invitation) -> Invitation:
    return (
        Invitation.objects.select_for_update().select_related("organisation").get(pk=invitation.pk)
    )


def _refuse_if_decided(invitation: Invitation, wanted: InvitationStatus) -> None:
    if not invitation.can_transition_to(wanted):
        raise RuleViolation(
            "status",
            "already_decided",
            _(
                "This invitation is already %(status)s and a decision is final; invite again if it is still needed."
            ),
            {"status": invitation.get_status_display()},
        )


def _check_checker(invitation: Invitation, checker: User) -> None:
    """Four eyes (双人审批): the checker is not the maker."""
    if invitation.is_requested_by(checker):
        raise RuleViolation(
            "decided_by",
            "self_approval",
            _(
                "Nobody decides their own invitation: another organisation admin must approve or reject it. Withdraw it if it is no longer needed."
            ),
        )


def _decide(
    invitation: Invitation, status: InvitationStatus, by: User | None, note: str, now: datetime
) -> None:
    invitation.status = status
    invitation.decided_by = by
    invitation.decided_at = now
    invitation.decision_note = note.strip()


def acceptance_path(token: str) -> str:
    return reverse("accounts:invitation_accept", args=[token])


def do_approve_invitation(actor: Actor, invitation: Invitation, note: str = "") -> str:
    """Approve a pending invitation as a second admin; returns the acceptance link's path.

    The path holds the token and is returned only here, once: pass it on to the invitee.
    """
    checker = require_person(actor, Action.APPROVE_ROLE_CHANGE, invitation.organisation_id)
    if violation := too_long("decision_note", note):
        raise violation
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        invitation = _locked(invitation)
        _refuse_if_decided(invitation, InvitationStatus.APPROVED)
        _check_checker(invitation, checker)
        raise_all([v for v in [_already_member(invitation.organisation_id, invitation.email)] if v])
        _decide(invitation, InvitationStatus.APPROVED, checker, note, now)
        invitation.token_hash = hash_invitation_token(token)
        expires_at = invitation.expires_at = now + LINK_VALIDITY
        invitation.save()
        record_audit(
            actor,
            "invitation.approved",
            _target(invitation),
            invitation.organisation_id,
            _details(invitation, note=invitation.decision_note, expires_at=expires_at.isoformat()),
        )
    return acceptance_path(token)


def do_email_invitation(actor: Actor, invitation: Invitation, link: str) -> str:
    """Email the acceptance link to the invitee, right after approval; returns "" or the error.

    The outcome (never the link) is audited. A failure leaves the invitation valid: the approver
    still sees the link once and can pass it on by hand.
    """
    organisation = invitation.organisation.name
    subject = f"邀请加入 {organisation} · Invitation to join {organisation}"
    body = (
        f"{invitation.full_name}，您好：\n\n"
        f"{organisation} 邀请您以「{invitation.get_role_display()}」身份使用票通。"
        f"请在 7 天内打开以下链接设置用户名和密码（仅可使用一次）：\n{link}\n\n"
        f"Hello {invitation.full_name},\n\n{organisation} invites you to Piaotong as "
        f"{invitation.get_role_display()}. Open this link within 7 days to choose your username "
        f"and password (it works once):\n{link}\n\n"
        "如果您不认识该单位，请忽略本邮件。If you do not know this organisation, ignore this email.\n"
    )
    error = ""
    try:
        send_mail(subject, body, None, [invitation.email], fail_silently=False)
    except (OSError, smtplib.SMTPException) as failure:
        error = f"{type(failure).__name__}: {failure}"[:300]
    with transaction.atomic():
        record_audit(
            actor,
            "invitation.emailed" if not error else "invitation.email_failed",
            _target(invitation),
            invitation.organisation_id,
            _details(invitation, error=error),
        )
    return error


def do_reject_invitation(actor: Actor, invitation: Invitation, note: str) -> Invitation:
    """Refuse a pending invitation as a second admin, saying why; no link is issued."""
    checker = require_person(actor, Action.APPROVE_ROLE_CHANGE, invitation.organisation_id)
    missing = _("Say why the invitation is rejected, so the requester understands the decision.")
    if violation := required_text("decision_note", note, missing):
        raise violation
    with transaction.atomic():
        invitation = _locked(invitation)
        _refuse_if_decided(invitation, InvitationStatus.REJECTED)
        _check_checker(invitation, checker)
        _decide(invitation, InvitationStatus.REJECTED, checker, note, timezone.now())
        invitation.save()
        record_audit(
            actor,
            "invitation.rejected",
            _target(invitation),
            invitation.organisation_id,
            _details(invitation, note=invitation.decision_note),
        )
    return invitation


def do_withdraw_invitation(actor: Actor, invitation: Invitation) -> Invitation:
    """Take back one's own pending invitation before anyone decides it."""
    maker = require_person(actor, Action.REQUEST_ROLE_CHANGE, invitation.organisation_id)
    with transaction.atomic():
        invitation = _locked(invitation)
        _refuse_if_decided(invitation, InvitationStatus.WITHDRAWN)
        if not invitation.is_requested_by(maker):
            raise RuleViolation(
                "requested_by",
                "not_requester",
                _(
                    "Only the admin who made an invitation may withdraw it; reject it instead, with a reason."
                ),
            )
        _decide(invitation, InvitationStatus.WITHDRAWN, None, "", timezone.now())
        invitation.save()
        record_audit(
            actor,
            "invitation.withdrawn",
            _target(invitation),
            invitation.organisation_id,
            _details(invitation),
        )
    return invitation


def find_invitation(token: str, now: datetime | None = None) -> Invitation | None:
    """The approved, unused, unexpired invitation behind a token; None for any other token.

    Unknown, used and expired tokens are not told apart, so the page reveals nothing to someone
    trying tokens.
    """
    wanted = hash_invitation_token(token)
    found = (
        Invitation.objects.filter(token_hash=wanted, status=InvitationStatus.APPROVED)
        .select_related("organisation")
        .first()
    )
    # The lookup is by hash, so timing reveals nothing of the token; compare again to be sure.
    if found is None or not hmac.compare_digest(found.token_hash, wanted):
        return None
    if found.has_expired(now or timezone.now()):
        return None
    return found


def _account_violations(username: str, invitation: Invitation) -> list[RuleViolation]:
    violations: list[RuleViolation] = []
    if not username.strip():
        violations.append(RuleViolation("username", "required", _("Choose a username.")))
    elif User.objects.filter(username__iexact=username.strip()).exists():
        violations.append(
            RuleViolation(
                "username",
                "username_taken",
                _("The username %(username)s is taken; choose another one."),
                {"username": username.strip()},
            )
        )
    if violation := _already_member(invitation.organisation_id, invitation.email):
        violations.append(violation)
    return violations


def _create_user(actor: Actor, username: str, password: str, invitation: Invitation) -> User:
    try:
        return do_create_user(
            actor, username, password, full_name=invitation.full_name, email=invitation.email
        )
    except ValidationError as error:
        field = "password" if not hasattr(error, "error_dict") else "username"
        raise RuleViolation(field, "invalid", " ".join(error.messages)) from None


def do_accept_invitation(
    token: str, username: str, password: str, *, ip: str = "", now: datetime | None = None
) -> User:
    """Create the invitee's login with the approved role; the link works once.

    Attempts are counted per IP address in their own transaction, so a refused attempt still
    counts towards the throttle.
    """
    now = now or timezone.now()
    if throttle.invitation_locked_until(ip, now) is not None:
        raise RuleViolation(
            "token",
            "throttled",
            _("Too many attempts from your network; wait a quarter of an hour and try again."),
        )
    with transaction.atomic():
        throttle.record_invitation_attempt(ip, now)
    visitor = Visitor(ip=ip)
    with transaction.atomic():
        found = find_invitation(token, now)
        invitation = _locked(found) if found is not None else None
        if invitation is None or invitation.status != InvitationStatus.APPROVED:
            raise RuleViolation("token", "invalid_link", INVALID_LINK)
        raise_all(_account_violations(username, invitation))
        user = _create_user(visitor, username, password, invitation)
        newcomer = Actor(user=user)
        # The grant was approved with the invitation; this only applies it.
        do_grant_role(newcomer, user, invitation.organisation, Role(invitation.role))
        invitation.status = InvitationStatus.ACCEPTED
        invitation.accepted_user, invitation.accepted_at = user, now
        invitation.save(update_fields=["status", "accepted_user", "accepted_at"])
        record_audit(
            newcomer,
            "invitation.accepted",
            _target(invitation),
            invitation.organisation_id,
            _details(invitation, user=user.username, ip=ip),
        )
    return user
