"""Collecting the facts of a trace (为什么找不到这张发票) from this node and the nodes it asks.

`trace_invoice(actor, query, asker)` is the one entry point of the UI, the API, the CLI and
verification's 查无此票: it reads this node's tables (the invoice, its ledger events, outbox,
inbox, parked and quarantined events, the consumer's status), asks the invoice's home node and
the hub over NATS request/reply (`trace_remote`) when the invoice is not here, and hands the
facts to the pure `trace.decide`. It writes nothing.

`describe_invoice(number)` is the other side: what this node answers when asked "do you have
invoice N" (status, parties' tax ids, when committed and published), for `trace_remote`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor, reviewing_regions
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.exchange.choices import ParkReason, QuarantineReason, WorkerState
from piaotong.exchange.messages import parse_subject
from piaotong.exchange.models import (
    InboxEvent,
    Node,
    OutboxEvent,
    ParkedEvent,
    PeerStatus,
    QuarantinedEvent,
    ReconciliationRun,
    WorkerStatus,
)
from piaotong.exchange.nodes import this_node
from piaotong.exchange.status import STALE_AFTER
from piaotong.exchange.trace import (
    Held,
    HeldInvoice,
    Lag,
    MalformedInput,
    NodeAnswer,
    Step,
    TraceFacts,
    TraceInput,
    TraceResult,
    decide,
    malformed,
    near_miss_numbers,
    parse_trace_input,
)
from piaotong.invoices.access import visible_invoices
from piaotong.invoices.models import Invoice
from piaotong.ledger.models import LedgerEvent
from piaotong.lib.errors import RuleViolation
from piaotong.lib.qr import is_signed_payload

ISSUED = "InvoiceIssued"
MAX_HELD_SCAN = 1000  # parked InvoiceIssued messages read when looking for a number
# Ask nodes: [(node id, request bytes)] -> answers (None when a node did not answer in time).
Asker = Callable[[list[tuple[str, bytes]]], list[bytes | None]]


def may_trace(actor: Actor | None) -> bool:
    return actor is not None and bool(actor.organisation_ids(Action.TRACE_INVOICE))


def require_tracer(actor: Actor | None) -> Actor:
    """The actor, if one of their roles may trace invoices (`Action.TRACE_INVOICE`)."""
    if actor is None or not may_trace(actor):
        raise PermissionDenied(_("Your roles do not include tracing invoices."))
    return actor


def text_from_file(data: bytes, filename: str) -> str:
    """The official QR text (or the number) found in an uploaded picture or invoice file;
    RuleViolation when the file shows neither."""
    from piaotong.documents.reading import read_upload

    found = read_upload(data, filename)
    official = [text for text in found.qr_texts if not is_signed_payload(text)]
    if official:
        return official[0]
    if found.fields.get("number"):
        return found.fields["number"]
    raise RuleViolation(
        "file",
        "no_invoice_in_file",
        _("No invoice QR code or number was found in %(name)s."),
        {"name": filename[:100] or "?"},
    )


def trace_request(
    actor: Actor | None,
    *,
    text: str = "",
    invoice_code: str = "",
    issue_date: str = "",
    amount: str = "",
    upload: tuple[bytes, str] | None = None,
    asker: Asker | None = None,
) -> tuple[TraceResult, str]:
    """Trace what a form, the API or the CLI received; also returns the text traced (the QR
    text read from an uploaded picture), so a support ticket can trace it again."""
    if upload is not None and not text.strip():
        try:
            text = text_from_file(*upload)
        except RuleViolation as violation:
            return malformed(MalformedInput([violation])), ""
    found = trace_text(
        actor, text, invoice_code=invoice_code, issue_date=issue_date, amount=amount, asker=asker
    )
    return found, text.strip()


def trace_claim(
    text: str, issue_date: date | None, amount: Decimal | None, asker: Asker | None
) -> dict[str, Any]:
    """The trace of a verification's 查无此票, as the public sees it (no organisation): the
    verdict and its explanation as JSON, for `verification.results.not_found_result`."""
    try:
        query = parse_trace_input(text, today=timezone.localdate())
    except MalformedInput as error:
        return malformed(error).as_json()
    query = replace(query, issue_date=issue_date, amount=amount)
    return trace_invoice(Actor(), query, asker).as_json()


def trace_text(
    actor: Actor | None,
    text: str,
    *,
    invoice_code: str = "",
    issue_date: str | None = None,
    amount: str | None = None,
    asker: Asker | None = None,
) -> TraceResult:
    """Parse what the user typed (or the QR text read from a picture) and trace it."""
    try:
        query = parse_trace_input(
            text,
            invoice_code=invoice_code,
            issue_date=issue_date,
            amount=amount,
            today=timezone.localdate(),
        )
    except MalformedInput as error:
        return malformed(error)
    return trace_invoice(actor, query, asker)


def trace_invoice(actor: Actor | None, query: TraceInput, asker: Asker | None) -> TraceResult:
    """The verdict for `query` as `actor` may learn it; `actor` None is the node's operator."""
    return decide(gather(actor, query, asker))


# --- This node's facts ------------------------------------------------------------------------


def gather(actor: Actor | None, query: TraceInput, asker: Asker | None) -> TraceFacts:
    me = this_node()
    facts = TraceFacts(query, me.node_id, me.region, me.is_hub, timezone.now())
    if query.is_legacy:
        return facts
    invoice = Invoice.objects.filter(number=query.number).first()
    if invoice is not None:
        facts.local = held_invoice(invoice)
        facts.visible = actor is None or visible_invoices(actor).filter(pk=invoice.pk).exists()
        if facts.visible:
            facts.timeline = local_timeline(invoice.stream, me.node_id)
            facts.timeline += reconciliation_steps(query.number, invoice.issue_date)
        return facts
    parties = _Parties(actor)
    facts.quarantined, facts.parked = _held_events(query.number, parties, facts)
    if not (facts.quarantined or facts.parked or facts.hidden):
        _ask(facts, parties, asker)
        if not any(a.has_invoice for a in facts.answers):
            facts.near_misses = near_misses(actor, query)
    facts.lag = consumer_lag(facts.now)
    if not facts.hidden:
        facts.timeline += reconciliation_steps(query.number, None)
    return facts


def held_invoice(invoice: Invoice) -> HeldInvoice:
    return HeldInvoice(
        number=invoice.number or "",
        kind=invoice.kind,
        status=invoice.status,
        status_label=str(invoice.get_status_display()),
        issue_date=invoice.issue_date,
        total_amount=invoice.total_amount,
        total_with_tax=invoice.total_with_tax,
        seller_name=invoice.seller_name,
        seller_tax_id=invoice.seller_tax_id,
        buyer_name=invoice.buyer_name,
        buyer_tax_id=invoice.buyer_tax_id,
        authority_flag=invoice.authority_flag,
    )


def local_timeline(stream: str, me: str) -> list[Step]:
    """Committed (per writer), published (our events) and applied here (others' events)."""
    steps: list[Step] = []
    events = list(
        LedgerEvent.objects.filter(stream=stream)
        .order_by("occurred_at", "id")
        .values_list("pk", "event_id", "writer", "kind", "seq", "occurred_at")
    )
    outbox = {
        row[0]: row[1:]
        for row in OutboxEvent.objects.filter(
            ledger_event_id__in=[e[0] for e in events]
        ).values_list("ledger_event_id", "published_at", "stream_seq", "created_at")
    }
    inbox = {
        row[0]: row[1:]
        for row in InboxEvent.objects.filter(stream=stream).values_list(
            "event_id", "applied_at", "stream_seq"
        )
    }
    for pk, event_id, writer, kind, seq, occurred_at in events:
        steps.append(Step(occurred_at, "committed", writer, f"{kind} #{seq}"))
        if pk in outbox:
            published_at, stream_seq, created_at = outbox[pk]
            if published_at is None:
                steps.append(Step(created_at, "not_published", me, kind))
            else:
                steps.append(
                    Step(published_at, "published", me, f"{kind}, stream seq {stream_seq}")
                )
        if event_id in inbox:
            applied_at, stream_seq = inbox[event_id]
            steps.append(Step(applied_at, "applied", me, f"{kind}, stream seq {stream_seq}"))
    return steps


RECENT_RUNS = 50


def reconciliation_steps(number: str, issue_date: date | None) -> list[Step]:
    """Reconciliation runs (对账) that covered the invoice's day with its region, or listed the
    number as a difference, among the recent runs."""
    steps = []
    region = number[2:4]
    for run in ReconciliationRun.objects.order_by("-started_at")[:RECENT_RUNS]:
        listed = next((d for d in run.differences if d.get("number") == number), None)
        covers = (
            issue_date is not None
            and run.date_from <= issue_date <= run.date_to
            and run.seller_region in {"", region}
        )
        if listed is not None:
            state = "repaired" if listed.get("repaired") else "not repaired"
            detail = f"{listed.get('kind', '')} difference, {state}"
        elif covers:
            detail = f"compared: {run.outcome}"
        else:
            continue
        steps.append(Step(run.finished_at, "reconciled", run.peer, detail))
        if len(steps) >= 3:
            break
    return steps


class _Parties:
    """Whether the actor may learn about an invoice of these parties (as invoices.access)."""

    def __init__(self, actor: Actor | None) -> None:
        self.everything = actor is None
        ids = actor.organisation_ids(Action.VIEW_INVOICES) if actor else []
        self.tax_ids = set(Organisation.objects.filter(pk__in=ids).values_list("tax_id", flat=True))
        self.regions = reviewing_regions(actor) if actor else set()

    def may_see(self, seller_tax_id: str, buyer_tax_id: str, seller_region: str) -> bool:
        return (
            self.everything
            or bool({seller_tax_id, buyer_tax_id} & self.tax_ids - {""})
            or seller_region in self.regions
        )


def _held_events(
    number: str, parties: _Parties, facts: TraceFacts
) -> tuple[list[Held], list[Held]]:
    """This number's InvoiceIssued waiting in quarantine or parked here (both tables are
    small by nature: they hold exceptions, not traffic)."""
    quarantined = []
    for row in QuarantinedEvent.objects.filter(released_at=None, raw__contains=number)[:10]:
        invoice = _issued_invoice(row.raw)
        if invoice is not None and invoice.get("number") != number:
            continue
        if invoice is not None and not _may_see(parties, invoice):
            facts.hidden = True
            return [], []
        label = QuarantineReason(row.reason).label if row.reason else row.reason
        quarantined.append(Held(row.reason, label, row.detail, row.quarantined_at, row.kind))
        facts.timeline.append(Step(row.quarantined_at, "quarantined", facts.node_id, row.detail))
    parked = []
    waiting = ParkedEvent.objects.filter(kind=ISSUED).order_by("parked_at")[:MAX_HELD_SCAN]
    for early in waiting:
        invoice = ((early.message.get("event") or {}).get("payload") or {}).get("invoice") or {}
        if invoice.get("number") != number:
            continue
        if not _may_see(parties, invoice):
            facts.hidden = True
            return [], []
        label = ParkReason(early.reason).label
        parked.append(Held(early.reason, label, "", early.parked_at, early.kind))
        facts.timeline.append(Step(early.parked_at, "parked", facts.node_id, early.reason))
    return quarantined, parked


def _issued_invoice(raw: str) -> dict[str, Any] | None:
    try:
        invoice = orjson.loads(raw)["event"]["payload"]["invoice"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return invoice if isinstance(invoice, dict) else None


def _may_see(parties: _Parties, invoice: dict[str, Any]) -> bool:
    seller = (invoice.get("seller") or {}).get("tax_id", "")
    buyer = (invoice.get("buyer") or {}).get("tax_id", "")
    return parties.may_see(seller, buyer, str(invoice.get("number", ""))[2:4])


def near_misses(actor: Actor | None, query: TraceInput) -> list[str]:
    """Existing numbers one typo away. With the date and the amount typed, those that match
    both (the facts a verifier knows); without them, only invoices the actor may see."""
    candidates = near_miss_numbers(query.number)
    rows = Invoice.objects.filter(number__in=candidates)
    if query.issue_date is not None and query.amount is not None:
        matching = rows.filter(issue_date=query.issue_date).values_list(
            "number", "total_amount", "total_with_tax"
        )
        return sorted(str(n) for n, a, t in matching if query.amount in {a, t})
    readable = rows if actor is None else visible_invoices(actor).filter(number__in=candidates)
    return sorted(str(n) for n in readable.values_list("number", flat=True))


def consumer_lag(now: datetime) -> Lag:
    row = WorkerStatus.objects.filter(name="consumer").first()
    state = WorkerState.STOPPED
    if row is not None and now - row.heartbeat_at <= STALE_AFTER:
        state = WorkerState(row.state)
    recent = InboxEvent.objects.filter(applied_at__gte=now - timedelta(seconds=60))
    last = (
        InboxEvent.objects.order_by("-applied_at").values_list("occurred_at", "applied_at").first()
    )
    count = recent.count()
    return Lag(
        consumer_state=state,
        pending=row.pending if row else None,
        last_lag_seconds=max(0.0, (last[1] - last[0]).total_seconds()) if last else None,
        apply_rate=count / 60.0 if count else None,
    )


# --- Asking the home node and the hub ------------------------------------------------------------


def nodes_to_ask(region: str, me: str) -> list[tuple[str, str, str]]:
    """(node id, role, region) of the invoice's home node and the hub, from the registry."""
    nodes = Node.objects.filter(region__in=[region, "00"]).values_list("node_id", "role", "region")
    chosen = [n for n in nodes if n[0] != me and (n[2] == region or n[1] == "hub")]
    if not any(n[2] == region for n in chosen) and f"node-{region}" != me:
        chosen.append((f"node-{region}", "regional", region))  # not registered yet: try anyway
    return chosen


def _ask(facts: TraceFacts, parties: _Parties, asker: Asker | None) -> None:
    targets = nodes_to_ask(facts.query.region, facts.node_id)
    if asker is None or not targets:
        return
    request = orjson.dumps({"number": facts.query.number})
    replies = asker([(node_id, request) for node_id, _role, _region in targets])
    for (node_id, role, region), reply in zip(targets, replies, strict=True):
        answer = _answer(node_id, role, region, reply, parties)
        facts.answers.append(answer)
        facts.timeline.extend(_answer_steps(answer))
    home = next((a for a in facts.answers if a.region == facts.query.region), None)
    if home is not None and home.relay_state:
        facts.home_relay_state, facts.home_relay_since = home.relay_state, home.relay_since
        return
    status = PeerStatus.objects.filter(node_id=home.node_id).first() if home else None
    if status is not None:  # the home node did not answer: its last heartbeat says
        facts.home_relay_state, facts.home_relay_since = status.relay_state, status.relay_since


def _answer(
    node_id: str, role: str, region: str, reply: bytes | None, parties: _Parties
) -> NodeAnswer:
    if reply is None:
        return NodeAnswer(node_id, role, region, reached=False, error="no answer")
    try:
        data = orjson.loads(reply)
        relay_state = str(data.get("relay_state") or "")
        relay_since = _time(data.get("relay_since"))
        if not data.get("has_invoice"):
            return NodeAnswer(
                node_id,
                role,
                region,
                reached=True,
                relay_state=relay_state,
                relay_since=relay_since,
            )
        return NodeAnswer(
            node_id,
            role,
            region,
            reached=True,
            has_invoice=True,
            relay_state=relay_state,
            relay_since=relay_since,
            status=str(data["status"]),
            buyer_region=str(data.get("buyer_region") or ""),
            committed_at=_time(data.get("committed_at")),
            published_at=_time(data.get("published_at")),
            stream_seq=data.get("stream_seq"),
            visible=parties.may_see(
                str(data["seller_tax_id"]), str(data["buyer_tax_id"]), str(data["number"])[2:4]
            ),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return NodeAnswer(node_id, role, region, reached=False, error=f"bad answer: {exc}")


def _answer_steps(answer: NodeAnswer) -> list[Step]:
    if not answer.reached:
        return [Step(None, "no_answer", answer.node_id, answer.error)]
    if not answer.has_invoice:
        return [Step(None, "not_there", answer.node_id)]
    if not answer.visible:
        return []
    steps = [Step(answer.committed_at, "committed", answer.node_id, ISSUED)]
    if answer.published_at is not None:
        detail = f"stream seq {answer.stream_seq}" if answer.stream_seq else ""
        steps.append(Step(answer.published_at, "published", answer.node_id, detail))
    else:
        steps.append(Step(None, "not_published", answer.node_id, ISSUED))
    return steps


def _relay_state() -> dict[str, Any]:
    row = WorkerStatus.objects.filter(name="relay").first()
    if row is None:
        return {"relay_state": WorkerState.STOPPED, "relay_since": None}
    stale = timezone.now() - row.heartbeat_at > STALE_AFTER
    return {
        "relay_state": WorkerState.STOPPED if stale else row.state,
        "relay_since": (row.heartbeat_at if stale else row.since).isoformat(),
    }


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


# --- Answering another node --------------------------------------------------------------------


def describe_invoice(number: str) -> dict[str, Any]:
    """This node's answer to "do you have invoice `number`": for node-to-node use only (the
    asking node decides what its user may see)."""
    me = this_node()
    node = {"node_id": me.node_id, "role": me.role, "region": me.region} | _relay_state()
    invoice = Invoice.objects.filter(number=number).select_related("buyer").first()
    if invoice is None:
        return node | {"has_invoice": False}
    issued = (
        LedgerEvent.objects.filter(stream=invoice.stream, kind=ISSUED)
        .values_list("pk", "event_id", "occurred_at")
        .first()
    )
    published_at, stream_seq, subject = None, None, ""
    if issued is not None:
        sent = OutboxEvent.objects.filter(ledger_event_id=issued[0]).first()
        got = InboxEvent.objects.filter(event_id=issued[1]).first()
        if sent is not None:
            published_at, stream_seq, subject = sent.published_at, sent.stream_seq, sent.subject
        elif got is not None:  # a replica: it was published, or it would not be here
            published_at, stream_seq, subject = got.received_at, got.stream_seq, got.subject
    route = parse_subject(subject) if subject else None
    committed = issued[2] if issued else invoice.issued_at
    return node | {
        "has_invoice": True,
        "number": number,
        "status": invoice.status,
        "seller_tax_id": invoice.seller_tax_id,
        "buyer_tax_id": invoice.buyer_tax_id,
        "buyer_region": route.buyer_region if route else "",
        "committed_at": committed.isoformat() if committed else None,
        "published_at": published_at.isoformat() if published_at else None,
        "stream_seq": stream_seq,
    }
