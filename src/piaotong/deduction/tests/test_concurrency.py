"""Concurrent selections on PostgreSQL: an invoice ends up selected in one period only, and a
selection racing a confirmation either lands before it or is refused."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from django.db import connection

from piaotong.deduction.actions import (
    SelectionErrors,
    SelectionItem,
    do_apply_statistics,
    do_confirm_deduction,
    do_select_for_deduction,
)
from piaotong.deduction.models import DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import period_of, previous_period
from piaotong.invoices.models import Invoice
from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation

pytestmark = pytest.mark.postgres


def run_together(targets: list[Callable[[], object]]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def guarded(target: Callable[[], object]) -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.django_db(transaction=True)
def test_an_invoice_is_selected_in_one_period_under_concurrency(issue, buyer, buyer_actor):
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency is PostgreSQL's; SQLite serialises writers")
    now = period_of(date.today())
    invoices = [issue() for _ in range(5)]
    # Dated into last month so both periods may hold them (test set-up only).
    Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(
        issue_date=date.today().replace(day=1) - timedelta(days=1)
    )
    items = [SelectionItem(i) for i in invoices]
    errors = run_together(
        [
            lambda: do_select_for_deduction(buyer_actor, buyer, now, items),
            lambda: do_select_for_deduction(buyer_actor, buyer, previous_period(now), items[::-1]),
        ]
    )
    assert len(errors) == 1 and isinstance(errors[0], SelectionErrors)
    assert DeductionSelection.objects.filter(revoked_at=None).count() == 5
    assert len(set(DeductionSelection.objects.values_list("deduction_period", flat=True))) == 1
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None


@pytest.mark.django_db(transaction=True)
def test_a_selection_racing_confirmation_is_counted_or_refused(issue, buyer, buyer_actor):
    if connection.vendor != "postgresql":
        pytest.skip("row-level concurrency is PostgreSQL's; SQLite serialises writers")
    period = period_of(date.today())
    do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(issue())])
    late = issue()

    def confirm() -> None:
        do_apply_statistics(buyer_actor, buyer, period)
        do_confirm_deduction(buyer_actor, buyer, period)

    errors = run_together(
        [
            confirm,
            lambda: do_select_for_deduction(buyer_actor, buyer, period, [SelectionItem(late)]),
        ]
    )
    selected = DeductionSelection.objects.filter(invoice=late).exists()
    if errors:
        # The selection came after statistics: refused, never silently outside the snapshot.
        assert [e.code for e in errors if isinstance(e, RuleViolation)] == ["period_status"]
        assert not selected
    else:
        stats = DeductionPeriod.objects.get(buyer=buyer, period=period).statistics
        assert selected and stats["totals"]["deduct"]["invoices"] == 2
