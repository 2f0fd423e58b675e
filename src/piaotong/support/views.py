"""Support tickets in the web UI: the list (with notices of replies), opening one from a trace,
reading, commenting and resolving."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from piaotong.accounts.access import Actor, actor_for_request
from piaotong.exchange.trace_remote import ask_nodes
from piaotong.lib.errors import RuleViolation
from piaotong.support import actions
from piaotong.support.access import (
    get_ticket_for_actor,
    handling_regions,
    is_handler,
    visible_tickets,
)
from piaotong.support.choices import TicketStatus

PAGE = 100


def _actor(request: HttpRequest) -> Actor:
    actor = actor_for_request(request)
    if actor is None:
        raise PermissionDenied
    return actor


@login_required
@require_GET
def ticket_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    tickets = visible_tickets(actor).select_related("organisation", "opened_by")
    status = request.GET.get("status", "")
    if status in TicketStatus.values:
        tickets = tickets.filter(status=status)
    rows = list(tickets[:PAGE])
    return render(
        request,
        "support/list.html",
        {
            "tickets": rows,
            "status": status,
            "statuses": TicketStatus.choices,
            "is_officer": bool(handling_regions(actor)),
            "unread": [
                t for t in rows if t.unread_for_opener and t.opened_by_id == request.user.pk
            ],
        },
    )


@login_required
@require_POST
def ticket_open(request: HttpRequest) -> HttpResponseBase:
    actor = _actor(request)
    ticket = actions.do_open_ticket(
        actor,
        text=request.POST.get("text", "")[:512],
        invoice_code=request.POST.get("invoice_code", "")[:12],
        issue_date=request.POST.get("issue_date", "")[:20],
        amount=request.POST.get("amount", "")[:30],
        description=request.POST.get("description", ""),
        asker=ask_nodes,
    )
    return redirect("support:detail", uid=ticket.uid)


@login_required
def ticket_detail(request: HttpRequest, uid: str) -> HttpResponseBase:
    actor = _actor(request)
    ticket = get_ticket_for_actor(actor, uid)
    error: RuleViolation | None = None
    if request.method == "POST":
        try:
            if "resolve" in request.POST:
                actions.do_resolve_ticket(actor, ticket, request.POST.get("resolution", ""))
            else:
                actions.do_comment_ticket(actor, ticket, request.POST.get("body", ""))
            return redirect("support:detail", uid=ticket.uid)
        except RuleViolation as violation:
            error = violation
    actions.do_mark_ticket_read(actor, ticket)
    return render(
        request,
        "support/detail.html",
        {
            "ticket": ticket,
            "comments": ticket.comments.all(),
            "evidence": ticket.evidence,
            "is_handler": is_handler(actor, ticket),
            "error": error,
        },
        status=422 if error else 200,
    )
