"""Many workers issuing at once on PostgreSQL: every number unique, none skipped."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from piaotong.accounts.access import Actor
from piaotong.invoices.actions import do_issue_invoices, do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolations
from piaotong.lib.invoice_numbers import parse_number
from piaotong.testing import draft

WORKERS, PER_WORKER = 8, 15


def run_workers(target) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_it_numbers_without_duplicates_or_gaps_under_concurrency(org_a, org_b, clerk_actor: Actor):
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency is PostgreSQL's; SQLite serialises writers")

    def issue_many() -> None:
        for round_ in range(PER_WORKER):
            if round_ % 3 == 0:
                do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 3)
            elif round_ % 5 == 0:
                # A failing issue must give its number back, leaving no gap.
                with pytest.raises(RuleViolations):
                    do_issue_new_invoice(clerk_actor, org_a, draft(org_b, buyer_tax_id="bad"))
            else:
                do_issue_new_invoice(clerk_actor, org_a, draft(org_b))

    assert run_workers(issue_many) == []
    sequences = sorted(
        parse_number(n).sequence for n in Invoice.objects.values_list("number", flat=True)
    )
    assert sequences == list(range(1, len(sequences) + 1))
    assert len(sequences) == WORKERS * (5 * 3 + 8)  # 5 bulk rounds of 3, 8 single issues per worker
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None
