"""Support tickets (报修): opening one from a trace, commenting, resolving, reading replies.

Each action checks who may act, then writes its rows and an audit entry in one transaction;
the email to the ticket's opener is sent after the commit (a failed email is logged, the
ticket is not rolled back: the in-app notice on the ticket list still tells the user).
"""

from __future__ import annotations

import logging
import smtplib

from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.exchange.trace_facts import Asker, require_tracer, trace_request
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolation
from piaotong.support.access import is_handler
from piaotong.support.choices import TicketStatus
from piaotong.support.models import Ticket, TicketComment

log = logging.getLogger(__name__)
MAX_TEXT = 2000


def _text(value: str, field: str, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise RuleViolation(field, "required", _("Write a few words, so the tax office can help."))
    if len(value) > MAX_TEXT:
        raise RuleViolation(
            field,
            "too_long",
            _("At most %(max)s characters, please; %(length)s were given."),
            {"max": MAX_TEXT, "length": len(value)},
        )
    return value


def _opening_organisation(actor: Actor) -> Organisation:
    ids = sorted(actor.organisation_ids(Action.TRACE_INVOICE))
    return Organisation.objects.get(pk=ids[0])


def do_open_ticket(
    actor: Actor,
    *,
    text: str,
    invoice_code: str = "",
    issue_date: str = "",
    amount: str = "",
    description: str = "",
    asker: Asker | None = None,
) -> Ticket:
    """Open a ticket about what the user traced. The trace runs again here, so the evidence is
    the platform's own, never what a browser sent back."""
    require_tracer(actor)
    if actor.user is None:
        raise PermissionDenied(_("Only a person can open a support ticket."))
    description = _text(description, "description", required=False)
    result, traced = trace_request(
        actor,
        text=text,
        invoice_code=invoice_code,
        issue_date=issue_date,
        amount=amount,
        asker=asker,
    )
    organisation = _opening_organisation(actor)
    with transaction.atomic():
        ticket = Ticket.objects.create(
            organisation=organisation,
            opened_by=actor.user,
            region=organisation.region,
            invoice_number=result.query.number if result.query else "",
            traced_input=traced[:512],
            verdict=result.verdict,
            evidence=result.as_json(),
            description=description,
        )
        record_audit(
            actor,
            "support.ticket_opened",
            ticket.target,
            organisation.pk,
            {"verdict": ticket.verdict, "invoice": ticket.invoice_number},
        )
    return ticket


def do_comment_ticket(actor: Actor, ticket: Ticket, body: str) -> TicketComment:
    """A message by the opener's side or a handling officer; an officer's reply notifies."""
    officer = is_handler(actor, ticket)
    if actor.user is None or not (
        officer or actor.can(Action.TRACE_INVOICE, ticket.organisation_id)
    ):
        raise PermissionDenied(_("You may not write on this ticket."))
    body = _text(body, "body", required=True)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if ticket.is_resolved:
            raise RuleViolation(
                "ticket", "resolved", _("This ticket is resolved; open a new one from a trace.")
            )
        comment = TicketComment.objects.create(
            ticket=ticket,
            author=actor.user,
            author_label=actor.label,
            by_officer=officer,
            body=body,
        )
        ticket.status = TicketStatus.ANSWERED if officer else TicketStatus.OPEN
        ticket.unread_for_opener = officer or ticket.unread_for_opener
        ticket.save(update_fields=["status", "unread_for_opener", "updated_at"])
        record_audit(
            actor,
            "support.ticket_commented",
            ticket.target,
            ticket.organisation_id,
            {"by_officer": officer},
        )
        if officer:
            _notify_after_commit(ticket, body)
    return comment


def do_resolve_ticket(actor: Actor, ticket: Ticket, resolution: str) -> Ticket:
    """A tax officer of the ticket's region closes it, saying what was done."""
    if not is_handler(actor, ticket):
        raise PermissionDenied(_("Only a tax officer of the ticket's region resolves it."))
    resolution = _text(resolution, "resolution", required=True)
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if ticket.is_resolved:
            raise RuleViolation("ticket", "resolved", _("This ticket is already resolved."))
        ticket.status, ticket.resolved_at = TicketStatus.RESOLVED, timezone.now()
        ticket.resolution, ticket.resolved_by_label = resolution, actor.label
        ticket.unread_for_opener = True
        ticket.save()
        record_audit(actor, "support.ticket_resolved", ticket.target, ticket.organisation_id, {})
        _notify_after_commit(ticket, resolution)
    return ticket


def do_mark_ticket_read(actor: Actor, ticket: Ticket) -> None:
    """The opener has seen the officers' latest words: the notice on the list goes away."""
    if actor.user is None or actor.user.pk != ticket.opened_by_id or not ticket.unread_for_opener:
        return
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(unread_for_opener=False)
        record_audit(actor, "support.ticket_read", ticket.target, ticket.organisation_id, {})


def _notify_after_commit(ticket: Ticket, words: str) -> None:
    transaction.on_commit(lambda: notify_opener(ticket.pk, words))


def notify_opener(ticket_id: int, words: str) -> bool:
    """Email the ticket's opener that a tax officer wrote (after the commit); False if not sent."""
    ticket = Ticket.objects.select_related("opened_by").get(pk=ticket_id)
    user = ticket.opened_by
    if not user.email:
        return False
    state = "已解决 resolved" if ticket.is_resolved else "已答复 answered"
    subject = f"报修工单{state} · Support ticket {ticket.invoice_number or ticket.uid}"
    body = (
        f"{user.get_full_name() or user.username}，您好：\n\n"
        f"税务机关已处理您关于发票 {ticket.invoice_number or '-'} 的报修（{ticket.verdict}）：\n"
        f"{words}\n\n"
        f"Hello,\n\nThe tax office wrote on your ticket about invoice "
        f"{ticket.invoice_number or '-'} ({ticket.verdict}):\n{words}\n\n"
        f"/support/{ticket.uid}/\n"
    )
    try:
        send_mail(subject, body, None, [user.email], fail_silently=False)
    except (OSError, smtplib.SMTPException) as failure:
        log.warning("support: could not email %s about %s: %s", user.pk, ticket.uid, failure)
        return False
    return True
