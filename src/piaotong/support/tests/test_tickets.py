"""Support tickets (报修): opened from a trace with its evidence, handled by the region's tax
officers, the opener notified by email and by a notice on the ticket list."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import reverse

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import User
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.ledger.models import AuditEntry
from piaotong.support.actions import (
    do_comment_ticket,
    do_open_ticket,
    do_resolve_ticket,
)
from piaotong.support.choices import TicketStatus
from piaotong.support.models import Ticket
from piaotong.testing import draft, make_user

pytestmark = pytest.mark.django_db
MISSING = "26112000000000009999"


@pytest.fixture
def opener(clerk: User) -> User:
    User.objects.filter(pk=clerk.pk).update(email="clerk@example.com")
    clerk.refresh_from_db()
    return clerk


@pytest.fixture
def ticket(opener: User) -> Ticket:
    return do_open_ticket(actor_for_user(opener), text=MISSING, description="找不到这张发票")


def actions_logged() -> list[str]:
    return list(
        AuditEntry.objects.filter(action__startswith="support.").values_list("action", flat=True)
    )


def test_it_opens_a_ticket_carrying_the_trace_evidence(ticket: Ticket, org_a: Any) -> None:
    assert ticket.verdict == "NOT_FOUND_ANYWHERE" and ticket.invoice_number == MISSING
    assert ticket.evidence["verdict"] == "NOT_FOUND_ANYWHERE"
    assert ticket.evidence["explanation"]["zh"] and ticket.evidence["explanation"]["en"]
    assert (ticket.organisation, ticket.region, ticket.status) == (org_a, "11", TicketStatus.OPEN)
    assert actions_logged() == ["support.ticket_opened"]


def test_it_traces_again_instead_of_trusting_the_browser(
    client: Any, opener: User, org_a: Any, org_b: Any
) -> None:
    invoice = do_issue_new_invoice(actor_for_user(opener), org_a, draft(org_b))
    client.force_login(opener)
    posted = {"text": invoice.number, "verdict": "NOT_FOUND_ANYWHERE", "description": "?"}
    answer = client.post(reverse("support:open"), posted)
    ticket = Ticket.objects.get()
    assert answer.status_code == 302 and answer["Location"].endswith(f"/support/{ticket.uid}/")
    assert ticket.verdict == "FOUND"


def test_only_the_organisation_and_the_regions_officers_see_a_ticket(
    client: Any, ticket: Ticket, outsider: User, tax_officer: User, shanghai_officer: User
) -> None:
    url = reverse("support:detail", args=[ticket.uid])
    for user, status in [(outsider, 404), (shanghai_officer, 404), (tax_officer, 200)]:
        client.force_login(user)
        assert client.get(url).status_code == status


def test_an_officer_answers_and_resolves_and_the_opener_is_told(
    client: Any,
    ticket: Ticket,
    opener: User,
    tax_officer: User,
    django_capture_on_commit_callbacks: Any,
) -> None:
    officer = actor_for_user(tax_officer)
    with django_capture_on_commit_callbacks(execute=True):
        do_comment_ticket(officer, ticket, "请确认发票号码。Please check the number.")
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.ANSWERED and ticket.unread_for_opener
    assert (
        mail.outbox[-1].to == ["clerk@example.com"] and "check the number" in mail.outbox[-1].body
    )

    client.force_login(opener)
    listing = client.get(reverse("support:list"))
    assert f'data-notice="{ticket.uid}"'.encode() in listing.content
    client.get(reverse("support:detail", args=[ticket.uid]))
    assert f'data-notice="{ticket.uid}"'.encode() not in client.get(reverse("support:list")).content

    do_comment_ticket(actor_for_user(opener), ticket, "号码没错。The number is right.")
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.OPEN
    with django_capture_on_commit_callbacks(execute=True):
        do_resolve_ticket(officer, ticket, "销方未上传，已通知。The seller had not uploaded it.")
    ticket.refresh_from_db()
    assert ticket.status == TicketStatus.RESOLVED and ticket.resolved_at is not None
    assert len(mail.outbox) == 2 and "resolved" in mail.outbox[-1].subject
    assert actions_logged() == [
        "support.ticket_opened",
        "support.ticket_commented",
        "support.ticket_read",
        "support.ticket_commented",
        "support.ticket_resolved",
    ]


def test_the_opener_cannot_resolve_and_nobody_writes_on_a_resolved_ticket(
    client: Any, ticket: Ticket, opener: User, tax_officer: User
) -> None:
    with pytest.raises(PermissionDenied):
        do_resolve_ticket(actor_for_user(opener), ticket, "done")
    do_resolve_ticket(actor_for_user(tax_officer), ticket, "done")
    client.force_login(opener)
    answer = client.post(reverse("support:detail", args=[ticket.uid]), {"body": "again"})
    assert answer.status_code == 422
    assert ticket.comments.count() == 0


def test_the_list_costs_the_same_queries_for_many_tickets(
    client: Any, opener: User, django_assert_max_num_queries: Any
) -> None:
    for _ in range(8):
        do_open_ticket(actor_for_user(opener), text=MISSING)
    client.force_login(opener)
    with django_assert_max_num_queries(12):
        page = client.get(reverse("support:list"))
    assert page.content.count(b"NOT_FOUND_ANYWHERE") == 8


def test_a_user_without_the_trace_right_cannot_open_one(org_a: Any) -> None:
    operator = make_user("operator", org_a, Role.ORG_ADMIN)
    assert actor_for_user(operator).organisation_ids()  # org admins may trace
    nobody = make_user("nobody", org_a)
    with pytest.raises(PermissionDenied):
        do_open_ticket(actor_for_user(nobody), text=MISSING)


def test_the_navigation_links_follow_the_roles(opener: User, tax_officer: User, org_a: Any) -> None:
    nav = Template('{% include "support/_nav.html" %}')
    for user, expected in [
        (opener, [b"/sync/trace/", b"/support/"]),
        (tax_officer, [b"/sync/trace/", b"/support/"]),
        (make_user("platform", org_a, Role.PLATFORM_ADMIN), []),
    ]:
        request = RequestFactory().get("/")
        request.user = user
        html = nav.render(Context({"request": request})).encode()
        assert [url for url in (b"/sync/trace/", b"/support/") if url in html] == expected
