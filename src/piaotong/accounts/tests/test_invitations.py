"""Invitations (邀请用户) under maker-checker: one admin invites, another approves, the invitee
accepts once through the link.

Personas: A's two admins (`admin`, `second_admin`), A's clerk from conftest, and the admin of
organisation B.
"""

from __future__ import annotations

import email
import email.policy
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import InvitationStatus, Role
from piaotong.accounts.invitations import (
    do_accept_invitation,
    do_approve_invitation,
    do_reject_invitation,
    do_request_invitation,
    do_withdraw_invitation,
)
from piaotong.accounts.models import Invitation, Membership, Organisation, User
from piaotong.accounts.throttle import INVITATION_LIMIT
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation
from piaotong.testing import make_user

pytestmark = pytest.mark.django_db
PASSWORD = "violet-harbour-lantern-42"
INVALID = "This invitation link is not valid or has expired."


@pytest.fixture(autouse=True)
def english(client: Client) -> None:
    client.cookies["django_language"] = "en"


@pytest.fixture
def admin(org_a):
    return make_user("admin", org_a, Role.ORG_ADMIN)


@pytest.fixture
def second_admin(org_a):
    return make_user("admin2", org_a, Role.ORG_ADMIN)


@pytest.fixture
def admin_b(org_b):
    return make_user("admin_b", org_b, Role.ORG_ADMIN)


def invite(user: User, org: Organisation, email: str = "li.na@example.com") -> Invitation:
    return do_request_invitation(
        actor_for_user(user),
        org,
        email=email,
        full_name="Li Na",
        role=Role.CLERK,
        reason="Joins the invoicing desk.",
    )


def token_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def approved_token(maker: User, checker: User, org: Organisation) -> str:
    return token_of(do_approve_invitation(actor_for_user(checker), invite(maker, org)))


def test_it_creates_the_invited_user_with_the_role_once_approved_and_accepted(
    client, org_a, admin, second_admin
):
    invitation = invite(admin, org_a)
    path = do_approve_invitation(actor_for_user(second_admin), invitation, "Welcome.")
    assert path.startswith("/accounts/invitations/accept/")

    response = client.post(path, {"username": "lina", "password": PASSWORD})

    assert response.status_code == 302
    assert response.url == reverse("accounts:login")
    user = User.objects.get(username="lina")
    assert (user.email, user.first_name) == ("li.na@example.com", "Li Na")
    assert Membership.objects.filter(user=user, organisation=org_a, role=Role.CLERK).exists()
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.ACCEPTED
    assert invitation.accepted_user == user
    login = client.post(reverse("accounts:login"), {"username": "lina", "password": PASSWORD})
    assert login.status_code == 302
    assert login.url == reverse("invoices:dashboard")


def test_it_shows_the_organisation_and_role_on_the_acceptance_page(
    client, org_a, admin, second_admin
):
    token = approved_token(admin, second_admin, org_a)

    response = client.get(reverse("accounts:invitation_accept", args=[token]))

    assert response.status_code == 200
    assert org_a.name in response.content.decode()
    assert "Issuing clerk" in response.content.decode()


def test_it_refuses_self_approval(org_a, admin):
    invitation = invite(admin, org_a)

    with pytest.raises(RuleViolation) as refused:
        do_approve_invitation(actor_for_user(admin), invitation)

    assert refused.value.code == "self_approval"
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.PENDING
    assert invitation.token_hash == ""


def test_it_refuses_an_expired_link(org_a, admin, second_admin):
    token = approved_token(admin, second_admin, org_a)
    later = timezone.now() + timedelta(days=7, seconds=1)

    with pytest.raises(RuleViolation) as refused:
        do_accept_invitation(token, "lina", PASSWORD, now=later)

    assert refused.value.code == "invalid_link"
    assert INVALID in refused.value.text()
    assert not User.objects.filter(username="lina").exists()


def test_it_refuses_a_used_link(org_a, admin, second_admin):
    token = approved_token(admin, second_admin, org_a)
    do_accept_invitation(token, "lina", PASSWORD)

    with pytest.raises(RuleViolation) as refused:
        do_accept_invitation(token, "lina2", PASSWORD)

    assert refused.value.code == "invalid_link"
    assert not User.objects.filter(username="lina2").exists()


def test_it_refuses_a_wrong_token_with_the_same_message(client, org_a, admin, second_admin):
    token = approved_token(admin, second_admin, org_a)
    wrong = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

    with pytest.raises(RuleViolation) as refused:
        do_accept_invitation(wrong, "lina", PASSWORD)
    response = client.post(
        reverse("accounts:invitation_accept", args=[wrong]),
        {"username": "lina", "password": PASSWORD},
    )

    assert refused.value.code == "invalid_link"
    assert INVALID in refused.value.text()
    assert response.status_code == 404
    assert INVALID in response.content.decode()


def test_it_refuses_a_taken_username(org_a, admin, second_admin, clerk):
    token = approved_token(admin, second_admin, org_a)

    with pytest.raises(RuleViolation) as refused:
        do_accept_invitation(token, clerk.username.upper(), PASSWORD)

    assert (refused.value.field, refused.value.code) == ("username", "username_taken")
    assert Invitation.objects.get().status == InvitationStatus.APPROVED


def test_it_refuses_to_invite_an_email_already_a_member(org_a, admin, clerk):
    clerk.email = "clerk@example.com"
    clerk.save()

    with pytest.raises(RuleViolation) as refused:
        invite(admin, org_a, email="Clerk@example.com")

    assert (refused.value.field, refused.value.code) == ("email", "already_member")


def test_it_never_writes_the_token_to_the_audit_log(client, org_a, admin, second_admin):
    path = do_approve_invitation(actor_for_user(second_admin), invite(admin, org_a))
    token = token_of(path)
    client.post(path, {"username": "lina", "password": PASSWORD})

    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"invitation.requested", "invitation.approved", "invitation.accepted"} <= actions
    for entry in AuditEntry.objects.all():
        assert token not in repr(entry.__dict__)


def test_it_rejects_and_withdraws_without_issuing_a_link(org_a, admin, second_admin):
    rejected = do_reject_invitation(actor_for_user(second_admin), invite(admin, org_a), "No.")
    withdrawn = do_withdraw_invitation(actor_for_user(admin), invite(admin, org_a))

    assert rejected.status == InvitationStatus.REJECTED
    assert withdrawn.status == InvitationStatus.WITHDRAWN
    assert not Invitation.objects.exclude(token_hash="").exists()


def test_it_shows_the_link_once_to_the_approving_admin(client, org_a, admin, second_admin):
    invitation = invite(admin, org_a)
    client.force_login(second_admin)

    response = client.post(reverse("accounts:invitation_approve", args=[invitation.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "/accounts/invitations/accept/" in html
    token = html.split("/accounts/invitations/accept/", 1)[1].split("/", 1)[0]
    listing = client.get(reverse("accounts:invitations", args=[org_a.pk])).content.decode()
    assert token not in listing


def test_it_invites_through_the_form(client, org_a, admin):
    client.force_login(admin)
    url = reverse("accounts:invitations", args=[org_a.pk])

    response = client.post(
        url,
        {"email": "wu@example.com", "full_name": "Wu Fei", "role": "auditor", "reason": "Audit."},
    )

    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role) == ("wu@example.com", Role.AUDITOR)
    assert "wu@example.com" in client.get(url).content.decode()


def test_it_answers_404_to_an_admin_of_another_organisation(client, org_a, admin, admin_b):
    invitation = invite(admin, org_a)
    client.force_login(admin_b)

    approve = client.post(reverse("accounts:invitation_approve", args=[invitation.pk]))
    page = client.get(reverse("accounts:invitations", args=[org_a.pk]))

    assert approve.status_code == 404
    assert page.status_code == 404
    assert Invitation.objects.get().status == InvitationStatus.PENDING


def test_it_does_not_let_a_clerk_invite(client, org_a, clerk):
    client.force_login(clerk)

    response = client.post(
        reverse("accounts:invitations", args=[org_a.pk]),
        {"email": "x@example.com", "full_name": "X", "role": "clerk", "reason": "Because."},
    )

    assert response.status_code in (403, 404)
    assert not Invitation.objects.exists()
    with pytest.raises(PermissionDenied):
        invite(clerk, org_a)


def test_it_throttles_acceptance_attempts_per_ip_address(client, org_a, admin, second_admin):
    token = approved_token(admin, second_admin, org_a)
    for _attempt in range(INVITATION_LIMIT):
        client.post(
            reverse("accounts:invitation_accept", args=["wrong"]),
            {"username": "x", "password": PASSWORD},
        )

    response = client.post(
        reverse("accounts:invitation_accept", args=[token]),
        {"username": "lina", "password": PASSWORD},
    )

    assert response.status_code == 200
    assert "Too many attempts" in response.content.decode()
    assert not User.objects.filter(username="lina").exists()


def test_it_accepts_only_organisation_roles(org_a, admin):
    with pytest.raises(RuleViolation) as refused:
        do_request_invitation(
            actor_for_user(admin),
            org_a,
            email="t@example.com",
            full_name="T",
            role=Role.TAX_OFFICER,
            reason="No.",
        )

    assert refused.value.code == "role_not_grantable"


def test_it_keeps_the_path_of_the_link_relative(org_a, admin, second_admin):
    path = do_approve_invitation(actor_for_user(second_admin), invite(admin, org_a))

    assert urlsplit(path).netloc == ""
    assert len(token_of(path)) >= 43


def test_it_lets_an_email_be_invited_again_once_its_link_has_lapsed(org_a, admin, second_admin):
    first = invite(admin, org_a)
    do_approve_invitation(actor_for_user(second_admin), first)
    with pytest.raises(RuleViolation) as refused:
        invite(admin, org_a)
    assert refused.value.code == "invitation_open"
    Invitation.objects.filter(pk=first.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    again = invite(admin, org_a)

    first.refresh_from_db()
    assert first.status == InvitationStatus.EXPIRED
    assert again.status == InvitationStatus.PENDING
    assert AuditEntry.objects.filter(action="invitation.expired").count() == 1


def test_it_applies_the_password_policy_and_keeps_the_link_usable(org_a, admin, second_admin):
    token = approved_token(admin, second_admin, org_a)

    with pytest.raises(RuleViolation) as refused:
        do_accept_invitation(token, "lina", "short")

    assert refused.value.field == "password"
    assert not User.objects.filter(username="lina").exists()
    assert do_accept_invitation(token, "lina", PASSWORD).username == "lina"


# --- The link by email, through a real SMTP server ----------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp(settings: Any) -> Iterator[_Inbox]:
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    yield inbox
    controller.stop()


def test_it_emails_the_link_to_the_invitee_on_approval(client, org_a, admin, second_admin, smtp):
    invitation = invite(admin, org_a)
    client.force_login(second_admin)

    html = client.post(reverse("accounts:invitation_approve", args=[invitation.pk])).text

    [message] = smtp.messages
    assert message["To"] == invitation.email
    body = message.get_content()
    token = html.split("/accounts/invitations/accept/", 1)[1].split("/", 1)[0]
    assert f"/accounts/invitations/accept/{token}/" in body
    assert invitation.email in html and "emailed" in html
    entry = AuditEntry.objects.get(action="invitation.emailed")
    assert token not in repr(entry.__dict__)


def test_it_still_shows_the_link_when_the_mail_server_is_down(
    client, org_a, admin, second_admin, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _free_port()  # nobody listens
    invitation = invite(admin, org_a)
    client.force_login(second_admin)

    html = client.post(reverse("accounts:invitation_approve", args=[invitation.pk])).text

    assert "could not be sent" in html and "/accounts/invitations/accept/" in html
    assert AuditEntry.objects.filter(action="invitation.email_failed").count() == 1
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.APPROVED
