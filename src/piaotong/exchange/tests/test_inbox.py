"""Receiving events: idempotent, ordered per (stream, writer), parked or quarantined with reasons.

Node 11 issues (Beijing seller org A to Shanghai buyer org B); node 31 and the hub receive.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from typing import Any

import orjson
import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from piaotong.accounts.access import Actor
from piaotong.accounts.actions import do_register_organisation
from piaotong.accounts.models import Organisation
from piaotong.documents.actions import get_document
from piaotong.documents.models import Document
from piaotong.exchange.apply import ApplyRefused, register_applier, unregister_applier
from piaotong.exchange.choices import FactSide, ParkReason, QuarantineReason
from piaotong.exchange.inbox import (
    Outcome,
    receive,
    receive_batch,
    release_quarantined,
    retry_parked,
)
from piaotong.exchange.memo import remember
from piaotong.exchange.messages import dumps
from piaotong.exchange.models import InboxEvent, ParkedEvent, QuarantinedEvent
from piaotong.exchange.tests.conftest import (
    SEEN,
    Sent,
    as_node,
    event_message,
    issue_elsewhere,
    issue_many_elsewhere,
    register,
)
from piaotong.invoices.models import Invoice
from piaotong.invoices.payload import invoice_payload
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger
from piaotong.lib import signing
from piaotong.lib.canonical import canonical_json, chain_hash
from piaotong.lib.taxid import compose_uscc
from piaotong.testing import draft, line


@pytest.fixture
def issued(clerk: Any, org_a: Any, org_b: Any) -> Sent:
    register("node-11", "11")
    return issue_elsewhere(clerk, org_a, org_b)


def _event(sent: Sent) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(sent.data)["event"]
    return event


def _rewrite(sent: Sent, change: Any) -> Sent:
    """The message after `change(event)`, re-hashed as a (dishonest) writer would."""
    message = orjson.loads(sent.data)
    event = message["event"]
    change(event)
    body = {k: v for k, v in event.items() if k not in {"prev_hash", "hash"}}
    event["hash"] = chain_hash(event["prev_hash"], body)
    return Sent(sent.subject, dumps(message))


def test_it_applies_an_invoice_issued_at_its_home_node(issued: Sent, org_b: Any) -> None:
    event = _event(issued)
    with as_node("node-31", "31"):
        assert issued.deliver(stream_seq=7) == Outcome.APPLIED
    invoice = Invoice.objects.get(uid=event["stream"].removeprefix("invoice:"))
    payload = event["payload"]
    assert invoice.number == payload["invoice"]["number"]
    assert invoice.signature == payload["signature"] and invoice.status == "issued"
    assert invoice.buyer == org_b and invoice.lines.count() == 1
    stored = LedgerEvent.objects.get(event_id=event["event_id"])
    assert (stored.writer, stored.seq, stored.hash) == ("node-11", 1, event["hash"])
    assert InboxEvent.objects.get(event_id=event["event_id"]).stream_seq == 7
    assert list(verify_ledger()) == []


def test_it_applies_a_redelivered_event_once(issued: Sent) -> None:
    with as_node("node-31", "31"):
        assert issued.deliver() == Outcome.APPLIED
        assert issued.deliver() == Outcome.DUPLICATE
    assert Invoice.objects.count() == 1 and InboxEvent.objects.count() == 1


def test_it_ignores_its_own_events_coming_back(issued: Sent) -> None:
    with as_node("node-11", "11"):
        assert issued.deliver() == Outcome.OWN
    assert InboxEvent.objects.count() == 0


def test_it_parks_until_the_writers_key_is_registered(clerk: Any, org_a: Any, org_b: Any) -> None:
    sent = issue_elsewhere(clerk, org_a, org_b)
    with as_node("node-31", "31"):
        assert sent.deliver() == Outcome.PARKED
        assert ParkedEvent.objects.get().reason == ParkReason.AWAITING_KEY
        assert sent.deliver() == Outcome.DUPLICATE
        register("node-11", "11")
        assert retry_parked(ParkReason.AWAITING_KEY) == 1
    assert ParkedEvent.objects.count() == 0 and Invoice.objects.count() == 1


def test_it_parks_an_early_event_and_applies_it_when_the_gap_fills(
    issued: Sent, noted_kind: str
) -> None:
    first = _event(issued)
    second, second_hash = event_message(
        first["stream"], "node-11", 2, noted_kind, {"note": "a"}, first["hash"], schema_version=2
    )
    third, _ = event_message(
        first["stream"], "node-11", 3, noted_kind, {"note": "b"}, second_hash, schema_version=2
    )
    with as_node("node-31", "31"):
        assert third.deliver() == Outcome.PARKED
        assert second.deliver() == Outcome.PARKED  # seq 1 is missing too
        assert issued.deliver() == Outcome.APPLIED
    assert [seq for seq, _ in SEEN] == [2, 3]
    assert ParkedEvent.objects.count() == 0 and InboxEvent.objects.count() == 3
    assert list(verify_ledger()) == []


def test_it_upgrades_an_older_payload_version_on_read(issued: Sent, noted_kind: str) -> None:
    first = _event(issued)
    old, _ = event_message(
        first["stream"], "node-11", 2, noted_kind, {"text": "hi"}, first["hash"], schema_version=1
    )
    with as_node("node-31", "31"):
        issued.deliver()
        assert old.deliver() == Outcome.APPLIED
    assert SEEN == [(2, {"note": "hi", "upgraded": True})]
    # The ledger keeps the event exactly as its writer hashed it.
    assert LedgerEvent.objects.get(seq=2).payload == {"text": "hi"}
    assert list(verify_ledger()) == []


def test_it_quarantines_a_newer_schema_version_with_a_clear_reason(
    issued: Sent, noted_kind: str
) -> None:
    first = _event(issued)
    newer, _ = event_message(
        first["stream"], "node-11", 2, noted_kind, {"x": 1}, first["hash"], schema_version=3
    )
    with as_node("node-31", "31"):
        issued.deliver()
        assert newer.deliver() == Outcome.QUARANTINED
        assert newer.deliver() == Outcome.DUPLICATE
    row = QuarantinedEvent.objects.get()
    assert row.reason == QuarantineReason.NEWER_SCHEMA
    assert "InvoiceNoted version 3" in row.detail and "up to version 2" in row.detail


def test_it_quarantines_a_newer_envelope(issued: Sent) -> None:
    message = orjson.loads(issued.data) | {"envelope": 3}
    with as_node("node-31", "31"):
        assert receive(dumps(message), issued.subject) == Outcome.QUARANTINED
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.NEWER_SCHEMA


def test_it_reads_the_bare_event_of_envelope_version_1(issued: Sent) -> None:
    bare = orjson.loads(issued.data)["event"]
    with as_node("node-31", "31"):
        assert receive(dumps(bare), issued.subject) == Outcome.APPLIED


def test_it_quarantines_an_unknown_kind_and_releases_it_once_understood(issued: Sent) -> None:
    first = _event(issued)
    later, _ = event_message(
        first["stream"], "node-11", 2, "InvoiceFuture", {"y": 1}, first["hash"]
    )
    with as_node("node-31", "31"):
        issued.deliver()
        assert later.deliver() == Outcome.QUARANTINED
        row = QuarantinedEvent.objects.get()
        assert row.reason == QuarantineReason.UNKNOWN_SCHEMA and "InvoiceFuture" in row.detail
        register_applier("InvoiceFuture", side=FactSide.SELLER)(lambda event: None)
        try:
            assert release_quarantined(row) == Outcome.APPLIED
        finally:
            unregister_applier("InvoiceFuture")
    assert QuarantinedEvent.objects.count() == 0 and InboxEvent.objects.count() == 2


def test_it_quarantines_an_event_that_does_not_link_to_its_predecessor(
    issued: Sent, noted_kind: str
) -> None:
    first = _event(issued)
    forged, _ = event_message(
        first["stream"], "node-11", 2, noted_kind, {"note": "x"}, "0" * 64, schema_version=2
    )
    with as_node("node-31", "31"):
        issued.deliver()
        assert forged.deliver() == Outcome.QUARANTINED
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.BROKEN_PREV_HASH


def test_it_quarantines_a_second_event_claiming_a_taken_seq(issued: Sent, noted_kind: str) -> None:
    first = _event(issued)
    rival, _ = event_message(
        first["stream"], "node-11", 1, noted_kind, {"note": "x"}, "", schema_version=2
    )
    with as_node("node-31", "31"):
        issued.deliver()
        assert rival.deliver() == Outcome.QUARANTINED
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.CONFLICT


def test_it_quarantines_altered_content_whose_hash_no_longer_matches(issued: Sent) -> None:
    message = orjson.loads(issued.data)
    message["event"]["payload"]["invoice"]["remarks"] = "altered"
    with as_node("node-31", "31"):
        assert receive(dumps(message), issued.subject) == Outcome.QUARANTINED
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.BAD_HASH
    assert Invoice.objects.count() == 0


def test_it_quarantines_an_invoice_whose_signature_does_not_verify(issued: Sent) -> None:
    def alter(event: dict[str, Any]) -> None:
        invoice = event["payload"]["invoice"]
        invoice["total_with_tax"] = "9999999.00"
        event["payload"]["payload_hash"] = hashlib.sha256(canonical_json(invoice)).hexdigest()

    with as_node("node-31", "31"):
        assert _rewrite(issued, alter).deliver() == Outcome.QUARANTINED
    row = QuarantinedEvent.objects.get()
    assert row.reason == QuarantineReason.BAD_SIGNATURE and "does not verify" in row.detail
    assert Invoice.objects.count() == 0 and LedgerEvent.objects.count() == 0


def test_it_refuses_a_seller_fact_written_by_another_region(issued: Sent) -> None:
    register("node-31", "31")
    impostor = _rewrite(issued, lambda event: event.update(writer="node-31"))
    with as_node("hub", "00", "hub"):
        assert impostor.deliver() == Outcome.QUARANTINED
    row = QuarantinedEvent.objects.get()
    assert row.reason == QuarantineReason.WRONG_WRITER
    assert "region 11" in row.detail and "region 31" in row.detail


def test_it_rolls_back_what_a_refusing_apply_function_wrote(issued: Sent, noted_kind: str) -> None:
    first = _event(issued)
    refused, _ = event_message(
        first["stream"], "node-11", 2, noted_kind, {"refuse": True}, first["hash"], schema_version=2
    )
    with as_node("node-31", "31"):
        issued.deliver()
        assert refused.deliver() == Outcome.QUARANTINED
    assert not LedgerEvent.objects.filter(seq=2).exists()
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.INVALID_CONTENT


def test_it_quarantines_unreadable_bytes(db: Any) -> None:
    with as_node("node-31", "31"):
        assert receive(b"\xff not json", "piaotong.v1.11.31.InvoiceIssued") == Outcome.QUARANTINED
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.MALFORMED


def test_a_batch_applies_an_event_parked_earlier_in_the_same_batch(
    issued: Sent, noted_kind: str
) -> None:
    event = _event(issued)
    second, second_hash = event_message(
        event["stream"], "node-11", 2, noted_kind, {"note": "a"}, event["hash"], schema_version=2
    )
    third, _ = event_message(
        event["stream"], "node-11", 3, noted_kind, {"note": "b"}, second_hash, schema_version=2
    )
    batch = [(s.data, s.subject, None) for s in (third, issued, second, issued)]
    with as_node("node-31", "31"):
        outcomes = receive_batch(batch)
    assert outcomes == [Outcome.PARKED, Outcome.APPLIED, Outcome.APPLIED, Outcome.DUPLICATE]
    assert [seq for seq, _ in SEEN] == [2, 3] and not ParkedEvent.objects.exists()
    assert InboxEvent.objects.count() == 3


def test_a_batch_whose_database_fails_leaves_nothing_behind(issued: Sent) -> None:
    @register_applier("InvoiceDbFails", side=FactSide.SELLER)
    def apply_db_fails(event: Any) -> None:
        raise OperationalError("database is locked")

    try:
        event = _event(issued)
        failing, _ = event_message(event["stream"], "node-11", 2, "InvoiceDbFails", {}, event["hash"])  # fmt: skip
        with as_node("node-31", "31"), pytest.raises(OperationalError):
            receive_batch([(issued.data, issued.subject, 1), (failing.data, failing.subject, 2)])
        assert not Invoice.objects.exists() and not InboxEvent.objects.exists()
        with as_node("node-31", "31"):  # retried once the database is back: applied once
            assert receive_batch([(issued.data, issued.subject, 1)]) == [Outcome.APPLIED]
    finally:
        unregister_applier("InvoiceDbFails")


def test_a_batch_forgets_what_a_refused_event_wrote(issued: Sent) -> None:
    """Within a batch, looked-up rows are remembered (`memo.remember`); an event refused after
    writing one is rolled back, and the next event must not be handed the vanished row."""
    tax_id = compose_uscc("9", "1", "110105", "MEMA0001")
    used: list[bool] = []

    @register_applier("OrgNoted", side=FactSide.SELLER)
    def apply_org_noted(event: Any) -> None:
        org = remember(
            "organisation", tax_id, lambda: Organisation.objects.filter(tax_id=tax_id).first()
        )
        if org is None:
            created = do_register_organisation(
                Actor(), name="记忆测试公司", tax_id=tax_id, region="11"
            )
            org = remember("organisation", tax_id, lambda: created)
        if event.payload.get("refuse"):
            raise ApplyRefused(QuarantineReason.INVALID_CONTENT, "refused by the test")
        assert org is not None
        used.append(Organisation.objects.filter(pk=org.pk).exists())

    try:
        event = _event(issued)
        refused, _ = event_message(event["stream"], "node-11", 2, "OrgNoted", {"refuse": True}, event["hash"])  # fmt: skip
        other, _ = event_message("invoice:" + str(uuid.uuid4()), "node-11", 1, "OrgNoted", {}, "")
        batch = [(s.data, s.subject, None) for s in (issued, refused, other)]
        with as_node("node-31", "31"):
            outcomes = receive_batch(batch)
        assert outcomes == [Outcome.APPLIED, Outcome.QUARANTINED, Outcome.APPLIED]
        assert used == [True]  # the organisation the refused event registered was forgotten
        assert Organisation.objects.filter(tax_id=tax_id).count() == 1
    finally:
        unregister_applier("OrgNoted")


def test_a_batch_writes_one_audit_entry_for_what_it_received(issued: Sent, noted_kind: str) -> None:
    event = _event(issued)
    refused, _ = event_message(event["stream"], "node-11", 2, noted_kind, {"refuse": True}, event["hash"], schema_version=2)  # fmt: skip
    batch = [(issued.data, issued.subject, 7), (refused.data, refused.subject, 8)]
    before = AuditEntry.objects.count()
    with as_node("node-31", "31"):
        assert receive_batch(batch) == [Outcome.APPLIED, Outcome.QUARANTINED]
        assert receive_batch(batch) == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    entries = list(AuditEntry.objects.order_by("seq")[before:])
    assert [e.action for e in entries] == ["exchange.batch_received"]
    assert entries[0].details == {
        "outcomes": {"applied": 1, "quarantined": 1},
        "stream_seq": [7, 8],
    }


@pytest.mark.django_db(transaction=True)
def test_a_replica_is_rendered_on_first_download_not_by_the_consumer(
    issued: Sent, settings: Any
) -> None:
    settings.PIAOTONG_DOCUMENTS_RENDER = "inline"  # what an issuing node does after its commit
    with as_node("node-31", "31"):
        assert receive_batch([(issued.data, issued.subject, 1)]) == [Outcome.APPLIED]
        invoice = Invoice.objects.get(uid=_event(issued)["stream"].removeprefix("invoice:"))
        assert not Document.objects.filter(invoice=invoice).exists()
        document = get_document(invoice, "pdf")
    assert document.size > 0 and Document.objects.filter(invoice=invoice).count() == 1


def _batch(sent: list[Sent]) -> list[tuple[bytes, str, int | None]]:
    return [(s.data, s.subject, i + 1) for i, s in enumerate(sent)]


def test_a_batch_of_new_invoices_is_stored_together_exactly_as_one_by_one(
    clerk: Any, org_a: Any, org_b: Any
) -> None:
    register("node-11", "11")
    sent = issue_many_elsewhere(
        clerk, org_a, [draft(org_b, lines=[line(), line()]) for _ in range(6)]
    )
    # One by one (a batch of one cannot share statements) for the first three, together for the rest.
    with as_node("node-31", "31"):
        for item in _batch(sent)[:3]:
            assert receive_batch([item]) == [Outcome.APPLIED]
        with CaptureQueriesContext(connection) as together:
            assert receive_batch(_batch(sent)[3:]) == [Outcome.APPLIED] * 3
    inserts = [q["sql"] for q in together.captured_queries if q["sql"].startswith("INSERT")]
    assert len([q for q in inserts if 'invoices_invoice"' in q.split("(")[0]]) == 1
    invoices = list(Invoice.objects.order_by("number"))
    assert len(invoices) == 6 and all(i.lines.count() == 2 for i in invoices)
    for invoice in invoices:  # each stored exactly as signed, whichever way it came
        assert canonical_json(
            invoice_payload(invoice, list(invoice.lines.all()))
        ) == canonical_json(
            LedgerEvent.objects.get(stream=invoice.stream, seq=1).payload["invoice"]
        )
        assert invoice.buyer == org_b and invoice.seller.tax_id == org_a.tax_id
    assert InboxEvent.objects.count() == 6 and list(verify_ledger()) == []


def test_a_batch_checks_signatures_on_a_worker_thread_and_still_refuses_a_bad_one(
    clerk: Any, org_a: Any, org_b: Any, monkeypatch: Any
) -> None:
    """The batch starts its invoices' signature checks ahead (`signing.check_ahead`); each
    answer is the one the event's own check would give: a forged signature is quarantined,
    the honest invoices around it are stored."""
    register("node-11", "11")
    sent = issue_many_elsewhere(clerk, org_a, [draft(org_b) for _ in range(5)])

    def forge(event: dict[str, Any]) -> None:
        invoice = event["payload"]["invoice"]
        invoice["total_with_tax"] = "9999999.00"
        event["payload"]["payload_hash"] = hashlib.sha256(canonical_json(invoice)).hexdigest()

    sent[2] = _rewrite(sent[2], forge)
    checked_on: list[tuple[str, bool]] = []
    verify_now = signing._verify_now

    def recording(public_key: bytes, data: bytes, signature: str) -> bool:
        answer = verify_now(public_key, data, signature)
        checked_on.append((threading.current_thread().name, answer))
        return answer

    monkeypatch.setattr(signing, "_verify_now", recording)
    with as_node("node-31", "31"):
        outcomes = receive_batch(_batch(sent))
    assert outcomes == [Outcome.APPLIED] * 2 + [Outcome.QUARANTINED] + [Outcome.APPLIED] * 2
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.BAD_SIGNATURE
    assert Invoice.objects.count() == 4
    # Every signature was checked once, ahead, on the worker thread (the forged one too: the
    # one-by-one path that quarantined it took the same answer).
    assert len(checked_on) == 5
    assert all(name.startswith("signature-checks") for name, _ in checked_on)
    assert sorted(answer for _, answer in checked_on) == [False, True, True, True, True]


def test_a_group_that_cannot_be_stored_together_goes_one_by_one(
    clerk: Any, org_a: Any, org_b: Any
) -> None:
    register("node-11", "11")
    first = issue_many_elsewhere(clerk, org_a, [draft(org_b) for _ in range(3)])
    # Issued again from the same (rolled-back) sequence: the same numbers under other uids.
    impostor = issue_many_elsewhere(clerk, org_a, [draft(org_b) for _ in range(2)])[1]
    with as_node("node-31", "31"):
        assert receive_batch([(impostor.data, impostor.subject, 1)]) == [Outcome.APPLIED]
        outcomes = receive_batch(_batch(first))
    assert outcomes == [Outcome.APPLIED, Outcome.QUARANTINED, Outcome.APPLIED]
    assert QuarantinedEvent.objects.get().reason == QuarantineReason.CONFLICT
    assert Invoice.objects.count() == 3 and InboxEvent.objects.count() == 3
    assert list(verify_ledger()) == []


def test_an_invoice_is_stored_before_a_later_event_of_the_same_batch_needs_it(
    issued: Sent, noted_kind: str
) -> None:
    event = _event(issued)
    later, _ = event_message(event["stream"], "node-11", 2, noted_kind, {"note": "a"}, event["hash"], schema_version=2)  # fmt: skip
    with as_node("node-31", "31"):
        assert receive_batch(_batch([issued, later])) == [Outcome.APPLIED, Outcome.APPLIED]
    assert [seq for seq, _ in SEEN] == [2] and InboxEvent.objects.count() == 2
