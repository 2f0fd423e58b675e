"""Issuing through the fast insert path encrypts buyer contact details like the ORM does."""

from __future__ import annotations

import pytest
from django.db import connection

from piaotong.invoices.actions import do_issue_invoices
from piaotong.invoices.choices import BuyerKind, InvoiceKind
from piaotong.invoices.models import Invoice
from piaotong.testing import draft

pytestmark = pytest.mark.django_db


def person_draft(n: int):
    return draft(
        kind=InvoiceKind.DIGITAL_ORDINARY,
        buyer_kind=BuyerKind.PERSON,
        buyer_name=f"张三{n}",
        buyer_tax_id="",
        buyer_phone=f"1380000000{n}",
        buyer_email=f"zhang{n}@example.com",
    )


def test_it_issues_with_encrypted_buyer_contact_and_reads_it_back(clerk_actor, org_a):
    invoices = do_issue_invoices(clerk_actor, org_a, [person_draft(1), person_draft(2)])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT buyer_phone, buyer_email FROM invoices_invoice WHERE id IN (%s, %s)",
            [invoices[0].pk, invoices[1].pk],
        )
        stored = [value for row in cursor.fetchall() for value in row]
    assert all(value.startswith("pt1:") for value in stored)
    assert not any("1380000000" in value or "example.com" in value for value in stored)
    reread = Invoice.objects.get(pk=invoices[1].pk)
    assert (reread.buyer_phone, reread.buyer_email) == ("13800000002", "zhang2@example.com")
    assert reread.number and reread.signature
