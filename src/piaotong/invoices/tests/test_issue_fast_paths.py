"""The issuing hot path (fastsql): pipelined statements, COPY for large batches, raw inserts.

These paths exist only for speed (docs/benchmarks.md), so the tests check that they write what
the ORM would and keep every guarantee: all or nothing, gapless numbers, verifiable chains.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, connection

from piaotong import fastsql
from piaotong.exchange.models import OutboxEvent
from piaotong.invoices.actions import PIPELINE_UP_TO, do_issue_invoices, do_issue_new_invoice
from piaotong.invoices.models import Invoice, InvoiceLine, NumberSequence, QuotaUsage
from piaotong.invoices.payload import invoice_payload
from piaotong.ledger.chain import audit_body, event_body, verify_records
from piaotong.ledger.models import AuditEntry, ChainHead, LedgerEvent, SigningKey
from piaotong.lib import signing
from piaotong.lib.canonical import canonical_json
from piaotong.lib.errors import RuleViolation
from piaotong.lib.invoice_numbers import parse_number
from piaotong.testing import draft, line

pytestmark = pytest.mark.django_db


def facts() -> dict[str, Any]:
    """What an issue changes, to compare before and after a failed one."""
    sequence = NumberSequence.objects.get()
    return {
        "invoices": Invoice.objects.count(),
        "lines": InvoiceLine.objects.count(),
        "events": LedgerEvent.objects.count(),
        "outbox": OutboxEvent.objects.count(),
        "audit": list(AuditEntry.objects.values_list("seq", "hash")),
        "audit_head": ChainHead.objects.values_list("seq", "hash").get(name="audit"),
        "last_number": sequence.last_value,
        "quota_used": QuotaUsage.objects.get().used,
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("count", [1, PIPELINE_UP_TO + 1])
def test_it_writes_nothing_when_a_statement_fails_after_the_locks(org_a, org_b, clerk_actor, count):
    # A sequence set back by hand makes the next invoice number collide with an issued one:
    # the INSERT fails only after quota, numbers and the audit head were taken (pipelined on
    # PostgreSQL, so the failure is reported at the end of the pipeline).
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 2)
    NumberSequence.objects.update(last_value=1)
    before = facts()
    with pytest.raises(IntegrityError):
        do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * count)
    assert facts() == before
    assert not connection.in_atomic_block and not fastsql.in_pipeline()
    NumberSequence.objects.update(last_value=2)
    third = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    assert parse_number(third.number).sequence == 3


@pytest.mark.django_db(transaction=True)
def test_it_refuses_over_quota_and_takes_nothing(org_a, org_b, clerk_actor):
    do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    org_a.issuing_quota = Decimal("1500.00")
    org_a.save()
    before = facts()
    with pytest.raises(RuleViolation) as refused:
        do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    assert refused.value.code == "quota_exceeded"
    assert refused.value.params["remaining"] == Decimal("500.00")
    assert facts() == before


def test_it_takes_the_first_quota_row_and_number_of_a_month(org_a, org_b, clerk_actor):
    assert not QuotaUsage.objects.exists() and not NumberSequence.objects.exists()
    invoice = do_issue_new_invoice(clerk_actor, org_a, draft(org_b))
    assert parse_number(invoice.number).sequence == 1
    assert QuotaUsage.objects.get().used == Decimal("1000.00")


def test_it_issues_a_large_batch_with_every_row_and_chain(org_a, org_b, clerk_actor):
    # More rows than fastsql.COPY_FROM_ROWS: PostgreSQL takes them by COPY.
    lines = [line(), line(tax_code="3010102020000000000", item_name="运输费", tax_rate="0.09")]
    count = fastsql.COPY_FROM_ROWS + 5
    invoices = do_issue_invoices(clerk_actor, org_a, [draft(org_b, lines=lines)] * count)
    assert [parse_number(i.number).sequence for i in invoices] == list(range(1, count + 1))
    assert all(i.pk is not None for i in invoices)
    assert InvoiceLine.objects.count() == 2 * count
    key = SigningKey.objects.get()
    for invoice in Invoice.objects.prefetch_related("lines").order_by("id")[:: count // 7]:
        body = canonical_json(invoice_payload(invoice, list(invoice.lines.all())))
        assert signing.verify(bytes(key.public_key), body, invoice.signature)
        event = LedgerEvent.objects.get(stream=invoice.stream)
        assert verify_records([event], event_body) is None
        assert event.payload["invoice"] == invoice_payload(invoice, list(invoice.lines.all())) | {
            "issue_date": invoice.issue_date.isoformat()
        }
        assert OutboxEvent.objects.get(ledger_event=event).subject.startswith("piaotong.v1.11.31")
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
    assert AuditEntry.objects.filter(action="invoice.issued").count() == count


def driver_value(value: Any) -> Any:
    """A value as the driver sends it: Django wraps ints (Int2, Int8) and JSON (Jsonb) for
    psycopg, fastsql passes ints plainly and its own Jsonb."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return getattr(value, "obj", value)


def test_it_stores_what_the_orm_would(org_a, org_b, clerk_actor):
    email = "cai@example.com"
    do_issue_new_invoice(clerk_actor, org_a, draft(org_b, buyer_email=email, remarks="合同 7"))
    for model in (Invoice, InvoiceLine, LedgerEvent, AuditEntry, OutboxEvent):
        converters = fastsql._converters(model, connection.vendor, True)
        for obj in model.objects.all():
            for field, convert in zip(fastsql._fields(model, True), converters, strict=True):
                if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                    continue
                fast = convert(obj)
                orm = field.get_db_prep_save(field.pre_save(obj, True), connection)
                if field.name == "buyer_email":  # randomised tokens: compare the plaintext
                    assert fast != email
                    assert field.from_db_value(fast, None, connection) == email
                else:
                    assert driver_value(fast) == driver_value(orm), field
                    assert type(driver_value(fast)) is type(driver_value(orm)), field
