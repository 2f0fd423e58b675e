"""The trace over a real database: this node's tables, the nodes' answers, the page, the API and
the command.

Node-11 (Beijing) issues for seller A; node-31 (Shanghai) serves buyer B. An answer "from
node-11" is what `describe_invoice` really answered at node-11 while the invoice existed there,
replayed to the tracing node (whose database never held it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.documents.qrimage import qr_png
from piaotong.exchange.models import OutboxEvent
from piaotong.exchange.reconcile import RunReport, Scope, do_record_reconciliation_run
from piaotong.exchange.tests.conftest import Sent, as_node, issue_elsewhere, register
from piaotong.exchange.trace import Verdict
from piaotong.exchange.trace_facts import describe_invoice, trace_claim, trace_text
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.lib.qr import compose_digital_qr
from piaotong.testing import draft, line, make_org, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(clerk: Any, org_a: Any, org_b: Any) -> Invoice:
    """Issued here, at node-11 (the tests' default node), from A to B."""
    return do_issue_new_invoice(actor_for_user(clerk), org_a, draft(org_b))


def answering(answers: dict[str, dict[str, Any]]) -> Callable[..., list[bytes | None]]:
    """An asker replaying recorded answers; nodes without one do not answer."""

    def ask(requests: list[tuple[str, bytes]]) -> list[bytes | None]:
        return [
            orjson.dumps(answers[node]) if node in answers else None for node, _data in requests
        ]

    return ask


def issued_at_node_11(clerk: Any, org_a: Any, buyer: Any, publish: bool) -> dict[str, Any]:
    """node-11's answer about an invoice it issued (then rolled back: nobody else holds it)."""
    with as_node("node-11", "11"), transaction.atomic():
        invoice = do_issue_new_invoice(actor_for_user(clerk), org_a, draft(buyer))
        if publish:
            OutboxEvent.objects.update(published_at=invoice.issued_at, stream_seq=812)
        answer = describe_invoice(str(invoice.number))
        transaction.set_rollback(True)
    return answer


# --- What this node holds ---------------------------------------------------------------------


def test_it_finds_an_invoice_here_with_its_timeline(issued: Invoice, clerk: Any) -> None:
    result = trace_text(actor_for_user(clerk), str(issued.number))
    assert result.verdict == Verdict.FOUND and result.invoice is not None
    assert [step.step for step in result.timeline] == ["committed", "not_published"]


def test_it_tells_a_non_party_only_that_it_exists(issued: Invoice, org_a: Any) -> None:
    stranger = make_org("北京旁观者有限公司", "110105", "MA01LKK1")
    someone = make_user("someone", stranger, Role.CLERK)
    result = trace_text(actor_for_user(someone), str(issued.number))
    assert result.verdict == Verdict.NOT_A_PARTY
    assert result.invoice is None and result.timeline == []


def test_it_shows_the_region_officer_any_invoice_of_the_region(
    issued: Invoice, tax_officer: Any
) -> None:
    assert trace_text(actor_for_user(tax_officer), str(issued.number)).verdict == Verdict.FOUND


def test_it_names_the_pre_tax_amount_typed_instead_of_the_total(
    issued: Invoice, outsider: Any
) -> None:
    result = trace_text(
        actor_for_user(outsider),
        str(issued.number),
        issue_date=str(issued.issue_date),
        amount=str(issued.total_amount),
    )
    assert result.verdict == Verdict.FIELD_MISMATCH and result.mismatches == ["amount"]


def swapped(number: str) -> str:
    return number[:-2] + number[-1] + number[-2]


def test_it_proposes_the_number_one_typo_away_that_matches_date_and_amount(
    clerk: Any, org_a: Any, org_b: Any
) -> None:
    actor = actor_for_user(clerk)
    for _ in range(11):  # ...001 to ...011: same date and amount, other numbers
        do_issue_new_invoice(actor, org_a, draft(org_b))
    wanted = do_issue_new_invoice(  # ...012, typed as ...021
        actor, org_a, draft(org_b, lines=[line(unit_price=Decimal("777"))])
    )
    stranger = make_user(
        "someone", make_org("北京旁观者有限公司", "110105", "MA01LKK1"), Role.CLERK
    )
    typo = swapped(str(wanted.number))
    result = trace_text(
        actor_for_user(stranger),
        typo,
        issue_date=str(wanted.issue_date),
        amount=str(wanted.total_with_tax),
    )
    assert result.verdict == Verdict.NEAR_MISS and result.near_misses == [wanted.number]
    # Without the date and the amount, a stranger learns of no other number.
    blind = trace_text(actor_for_user(stranger), typo)
    assert blind.verdict == Verdict.NOT_FOUND_ANYWHERE and blind.near_misses == []


def test_it_finds_the_invoice_in_quarantine(clerk: Any, org_a: Any, org_b: Any) -> None:
    register("node-11", "11")
    sent = issue_elsewhere(clerk, org_a, org_b)
    message = orjson.loads(sent.data)
    message["event"]["hash"] = "0" * 64
    number = message["event"]["payload"]["invoice"]["number"]
    buyer = make_user("buyer.clerk", org_b, Role.CLERK)
    with as_node("node-31", "31"):
        Sent(sent.subject, orjson.dumps(message)).deliver()
        result = trace_text(actor_for_user(buyer), number)
        stranger = trace_text(actor_for_user(clerk_of_another_org()), number)
    assert result.verdict == Verdict.QUARANTINED
    assert "hash" in result.explanation_en.lower()
    assert [step.step for step in result.timeline] == ["quarantined"]
    assert stranger.verdict == Verdict.NOT_A_PARTY


def clerk_of_another_org() -> Any:
    return make_user("sh.someone", make_org("上海旁观者有限公司", "310115", "MA1LKK33"), Role.CLERK)


def test_it_finds_the_invoice_parked_until_its_writer_is_known(
    clerk: Any, org_a: Any, org_b: Any
) -> None:
    sent = issue_elsewhere(clerk, org_a, org_b)  # node-11 is not in the registry here
    number = orjson.loads(sent.data)["event"]["payload"]["invoice"]["number"]
    with as_node("node-31", "31"):
        sent.deliver()
        result = trace_text(actor_for_user(make_user("b", org_b, Role.CLERK)), number)
    assert result.verdict == Verdict.PARKED and "public key" in result.explanation_en


# --- What the home node and the hub say ----------------------------------------------------------


def test_it_says_not_yet_synced_when_the_home_node_published_it(
    clerk: Any, org_a: Any, org_b: Any
) -> None:
    answer = issued_at_node_11(clerk, org_a, org_b, publish=True)
    assert answer["has_invoice"] and answer["buyer_region"] == "31"
    buyer = make_user("b", org_b, Role.CLERK)
    with as_node("node-31", "31"):
        result = trace_text(
            actor_for_user(buyer), answer["number"], asker=answering({"node-11": answer})
        )
    assert result.verdict == Verdict.NOT_YET_SYNCED
    assert [s.step for s in result.timeline] == ["committed", "published"]
    assert result.timeline[1].detail == "stream seq 812"


def test_it_says_pending_at_the_issuer_when_the_home_node_has_not_published_it(
    clerk: Any, org_a: Any, org_b: Any
) -> None:
    answer = issued_at_node_11(clerk, org_a, org_b, publish=False)
    with as_node("node-31", "31"):
        result = trace_text(
            actor_for_user(make_user("b", org_b, Role.CLERK)),
            answer["number"],
            asker=answering({"node-11": answer, "hub": {"has_invoice": False}}),
        )
    assert result.verdict == Verdict.PENDING_AT_ISSUER
    assert answer["relay_state"] == "stopped" and "stopped" in result.explanation_en


def test_it_sends_the_user_to_the_home_region_when_this_node_never_receives_it(
    clerk: Any, org_a: Any, org_b: Any, tax_officer: Any
) -> None:
    answer = issued_at_node_11(clerk, org_a, org_b, publish=True)
    with as_node("node-44", "44"):
        result = trace_text(
            actor_for_user(tax_officer), answer["number"], asker=answering({"node-11": answer})
        )
    assert result.verdict == Verdict.OUT_OF_SCOPE and result.region_to_ask == "11"


def test_it_calls_a_number_nobody_knows_not_found_anywhere(clerk: Any) -> None:
    register("hub", "00", "hub")
    nobody = {"hub": {"has_invoice": False}}
    result = trace_text(actor_for_user(clerk), "26112000000000009999", asker=answering(nobody))
    assert result.verdict == Verdict.NOT_FOUND_ANYWHERE
    assert {s.step for s in result.timeline} == {"not_there"}


# --- Page, API, command -------------------------------------------------------------------------


def test_the_page_needs_a_login_and_the_trace_right(client: Any, issued: Invoice) -> None:
    url = reverse("exchange:trace")
    assert client.get(url).status_code == 302
    operator = make_user("operator", make_org("运营方", "110105", "MA01PR01"), Role.PLATFORM_ADMIN)
    client.force_login(operator)
    assert client.get(url).status_code == 403


def test_the_page_traces_a_number_and_a_picture_of_the_qr_code(
    client: Any, clerk: Any, issued: Invoice
) -> None:
    client.force_login(clerk)
    url = reverse("exchange:trace")
    page = client.post(url, {"text": issued.number})
    assert page.status_code == 200 and b'data-verdict="FOUND"' in page.content
    qr = compose_digital_qr("31", str(issued.number), issued.issue_date, issued.total_with_tax)
    upload = SimpleUploadedFile("qr.png", qr_png(qr), content_type="image/png")
    page = client.post(url, {"text": "", "picture": upload})
    assert b'data-verdict="FOUND"' in page.content
    wrong = client.post(url, {"text": "2611200000000000004"})
    assert b'data-verdict="MALFORMED"' in wrong.content


def test_the_api_answers_with_the_verdict_and_its_evidence(
    client: Any, clerk: Any, issued: Invoice
) -> None:
    client.force_login(clerk)
    typed = {
        "input": issued.number,
        "issue_date": str(issued.issue_date),
        "amount": str(issued.total_amount),
    }
    answer = client.post("/api/v1/sync/trace", typed, content_type="application/json")
    body = answer.json()
    assert answer.status_code == 200 and body["verdict"] == "FIELD_MISMATCH"
    assert body["explanation"]["zh"] and body["explanation"]["en"]
    assert body["mismatches"] == ["amount"] and body["invoice"]["number"] == issued.number
    assert body["timeline"][0]["step"] == "committed"


def test_the_command_prints_the_verdict(issued: Invoice) -> None:
    out = StringIO()
    call_command("trace", str(issued.number), "--amount", str(issued.total_with_tax), stdout=out)
    assert out.getvalue().startswith("FOUND")
    out = StringIO()
    call_command("trace", "01,32,,x", "--json", stdout=out)
    assert json.loads(out.getvalue())["verdict"] == "MALFORMED"


def test_the_command_reads_a_picture_of_the_qr_code(issued: Invoice, tmp_path: Any) -> None:
    qr = compose_digital_qr("32", str(issued.number), issued.issue_date, Decimal("1.00"))
    path = tmp_path / "qr.png"
    path.write_bytes(qr_png(qr))
    out = StringIO()
    call_command("trace", str(path), stdout=out)
    # The QR says 1.00, the invoice's total is not: the field that is wrong is named.
    assert out.getvalue().startswith("FIELD_MISMATCH")


def test_the_timeline_names_the_reconciliation_that_compared_the_invoice(
    issued: Invoice, clerk: Any
) -> None:
    day = issued.issue_date
    scope = Scope(region="11", seller_region="11", date_from=day, date_to=day)
    do_record_reconciliation_run(RunReport("hub", scope), "manual", timezone.now(), 0.1)
    result = trace_text(actor_for_user(clerk), str(issued.number))
    assert result.timeline[-1].step == "reconciled"
    assert (result.timeline[-1].node, result.timeline[-1].detail) == ("hub", "compared: equal")


def test_a_public_verification_miss_gets_the_trace_of_the_public(
    clerk: Any, org_a: Any, org_b: Any
) -> None:
    actor = actor_for_user(clerk)
    for _ in range(11):
        do_issue_new_invoice(actor, org_a, draft(org_b))
    wanted = do_issue_new_invoice(actor, org_a, draft(org_b, lines=[line(unit_price=Decimal(9))]))
    typo = swapped(str(wanted.number))
    answer = trace_claim(typo, wanted.issue_date, wanted.total_with_tax, None)
    assert answer["verdict"] == "NEAR_MISS" and answer["near_misses"] == [wanted.number]
    assert trace_claim(typo, wanted.issue_date, Decimal("1.00"), None)["verdict"] == (
        "NOT_FOUND_ANYWHERE"
    )


def test_verifications_not_found_answer_carries_the_trace(
    client: Any, clerk: Any, org_a: Any, org_b: Any
) -> None:
    actor = actor_for_user(clerk)
    for _ in range(11):
        do_issue_new_invoice(actor, org_a, draft(org_b))
    wanted = do_issue_new_invoice(actor, org_a, draft(org_b, lines=[line(unit_price=Decimal(9))]))
    typed = {
        "number": swapped(str(wanted.number)),
        "issue_date": str(wanted.issue_date),
        "total_with_tax": str(wanted.total_with_tax),
    }
    body = client.post("/api/v1/verify", typed, content_type="application/json").json()
    assert body["outcome"] == "not_found"
    assert body["trace"]["verdict"] == "NEAR_MISS"
    assert body["trace"]["near_misses"] == [wanted.number]
