"""Verification through the actions, against invoices issued on this node, with the limits and
the log; the personas are the seller's clerk, the buyer's clerk, a stranger and an anonymous
visitor of the public page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from piaotong.accounts.models import User
from piaotong.invoices.choices import AuthorityFlag, InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.verification import limits
from piaotong.verification.actions import (
    Requester,
    do_verify_digital,
    do_verify_legacy,
)
from piaotong.verification.choices import InputKind, Outcome
from piaotong.verification.models import DailyCheckCount, VerificationLog
from piaotong.verification.results import result_json

from .conftest import as_requester

pytestmark = pytest.mark.django_db


def check(requester: Requester, invoice: Invoice, **changes: Any) -> Any:
    inputs = {
        "number": invoice.number,
        "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else "",
        "total_with_tax": str(invoice.total_with_tax),
    } | changes
    return do_verify_digital(
        requester, inputs["number"], inputs["issue_date"], inputs["total_with_tax"]
    )


def test_it_matches_an_invoice_issued_a_moment_ago_with_its_details(
    anonymous: Requester, invoice: Invoice
) -> None:
    result = check(anonymous, invoice)
    assert result.outcome == Outcome.MATCH
    assert result.invoice.number == invoice.number
    assert result.invoice.seller_tax_id == invoice.seller_tax_id
    assert result.invoice.status_mark_zh == "正常"
    assert [line.name for line in result.invoice.lines] == [
        line.printed_name for line in invoice.lines.all()
    ]
    assert result.checks_today == 1


@pytest.mark.parametrize(
    ("status", "flag", "mark"),
    [
        (InvoiceStatus.PARTIALLY_RED_FLUSHED, "", "部分红冲"),
        (InvoiceStatus.FULLY_RED_FLUSHED, "", "全额红冲"),
        (InvoiceStatus.ISSUED, AuthorityFlag.OUT_OF_CONTROL, "失控"),
        (InvoiceStatus.ISSUED, AuthorityFlag.ABNORMAL, "异常"),
    ],
)
def test_it_prints_the_status_mark(
    anonymous: Requester, invoice: Invoice, status: str, flag: str, mark: str
) -> None:
    # The red-letter and authority actions belong to other apps; the mark is what is tested.
    Invoice.objects.filter(pk=invoice.pk).update(status=status, authority_flag=flag)
    invoice.refresh_from_db()
    result = check(anonymous, invoice)
    assert result.outcome == Outcome.MATCH
    assert result.invoice.status_mark_zh == mark


def test_it_names_the_differing_field_without_the_true_value_to_a_stranger(
    stranger: User, invoice: Invoice
) -> None:
    result = check(as_requester(stranger), invoice, total_with_tax="1061.00")
    assert result.outcome == Outcome.MISMATCH
    assert result.differing == ("total_with_tax",)
    assert result.invoice is None and result.stored == {}
    body = str(result_json(result))
    assert "1060" not in body and invoice.buyer_name not in body


def test_it_tells_an_anonymous_visitor_nothing_but_the_field(
    anonymous: Requester, invoice: Invoice
) -> None:
    assert invoice.issue_date
    wrong_day = (invoice.issue_date - timedelta(days=1)).isoformat()
    result = check(anonymous, invoice, issue_date=wrong_day)
    assert result.differing == ("issue_date",)
    assert not result.is_party and result.stored == {}
    assert invoice.issue_date.isoformat() not in str(result_json(result))


def test_it_shows_the_stored_values_to_the_buyer(buyer_clerk: User, invoice: Invoice) -> None:
    result = check(as_requester(buyer_clerk), invoice, total_with_tax="1061.00")
    assert result.is_party
    assert result.stored == {"total_with_tax": "1060.00"}


def test_it_shows_the_stored_values_to_the_seller(clerk: User, invoice: Invoice) -> None:
    assert invoice.issue_date
    wrong_day = (invoice.issue_date - timedelta(days=1)).isoformat()
    result = check(as_requester(clerk), invoice, issue_date=wrong_day)
    assert result.stored == {"issue_date": invoice.issue_date.isoformat()}


def test_it_says_so_when_the_pre_tax_amount_was_typed(
    anonymous: Requester, invoice: Invoice
) -> None:
    result = check(anonymous, invoice, total_with_tax="1000.00")
    assert result.outcome == Outcome.MISMATCH
    assert [hint.code for hint in result.hints] == ["pre_tax_amount_typed"]
    assert "价税合计" in result_json(result)["hints"][0]["message_zh"]


def test_it_answers_not_found_for_an_unknown_number(anonymous: Requester, invoice: Invoice) -> None:
    unknown = invoice.number[:-1] + ("1" if invoice.number[-1] != "1" else "2")
    result = check(anonymous, invoice, number=unknown)
    assert result.outcome == Outcome.NOT_FOUND
    assert result.identifier == unknown
    assert "查无此票" in result_json(result)["message_zh"]


def test_it_explains_a_not_found_number_of_another_region(
    anonymous: Requester, invoice: Invoice
) -> None:
    shanghai = invoice.number[:2] + "31" + invoice.number[4:]
    result = check(anonymous, invoice, number=shanghai)
    assert result.outcome == Outcome.NOT_FOUND
    assert "other_region" in [hint.code for hint in result.hints]


def test_it_never_finds_a_draft(anonymous: Requester, invoice: Invoice) -> None:
    Invoice.objects.filter(pk=invoice.pk).update(number=None, status=InvoiceStatus.DRAFT)
    result = do_verify_digital(
        anonymous, invoice.number, invoice.issue_date, invoice.total_with_tax
    )
    assert result.outcome == Outcome.NOT_FOUND


def test_it_answers_a_legacy_invoice_as_not_held_here(anonymous: Requester) -> None:
    today = timezone.localdate().isoformat()
    result = do_verify_legacy(anonymous, "1100191130", "12345678", today, amount="100.00")
    assert result.outcome == Outcome.NOT_FOUND
    assert result.input_kind == InputKind.LEGACY
    assert [hint.code for hint in result.hints] == ["legacy_not_held"]


def test_it_refuses_bad_input_and_logs_it(anonymous: Requester) -> None:
    with pytest.raises(RuleViolations):
        do_verify_digital(anonymous, "123", "yesterday", "1.001")
    entry = VerificationLog.objects.get()
    assert entry.outcome == Outcome.INVALID
    assert DailyCheckCount.objects.count() == 0


def test_it_refuses_a_future_issue_date(anonymous: Requester, invoice: Invoice) -> None:
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    with pytest.raises(RuleViolation) as caught:
        check(anonymous, invoice, issue_date=tomorrow)
    assert caught.value.code == "date_in_future"


# --- Daily limit -----------------------------------------------------------------------------


def test_it_refuses_the_sixth_check_of_an_invoice_today_whoever_asks(
    anonymous: Requester, stranger: User, invoice: Invoice
) -> None:
    askers = [anonymous, as_requester(stranger), anonymous, anonymous, as_requester(stranger)]
    # Mismatches count like matches.
    outcomes = [check(who, invoice, total_with_tax="1.00").outcome for who in askers[:2]]
    outcomes += [check(who, invoice).outcome for who in askers[2:]]
    assert outcomes == [Outcome.MISMATCH] * 2 + [Outcome.MATCH] * 3
    sixth = check(Requester(None, "192.0.2.99"), invoice)
    assert sixth.outcome == Outcome.DAILY_LIMIT
    assert sixth.invoice is None
    assert 0 < sixth.retry_after <= 86400
    body = result_json(sixth)
    assert "超过当天查验次数" in body["message_zh"]
    assert "5 times today" in body["message_en"]


def test_it_counts_not_found_checks_per_typed_number(anonymous: Requester, settings: Any) -> None:
    settings.PIAOTONG_VERIFY_DAILY_LIMIT = 2
    today = timezone.localdate().isoformat()
    number = "26112000000000009999"
    outcomes = [
        do_verify_digital(Requester(None, f"192.0.2.{i}"), number, today, "1").outcome
        for i in range(3)
    ]
    assert outcomes == [Outcome.NOT_FOUND, Outcome.NOT_FOUND, Outcome.DAILY_LIMIT]


def test_it_starts_each_natural_day_afresh() -> None:
    today = timezone.localdate()
    for _ in range(5):
        limits.count_daily("26112000000000000001", today)
    assert limits.count_daily("26112000000000000001", today) == 6
    assert limits.count_daily("26112000000000000001", today + timedelta(days=1)) == 1


def test_it_follows_the_configured_daily_limit(
    anonymous: Requester, invoice: Invoice, settings: Any
) -> None:
    settings.PIAOTONG_VERIFY_DAILY_LIMIT = 7
    outcomes = [check(Requester(None, f"192.0.2.{i}"), invoice).outcome for i in range(8)]
    assert outcomes == [Outcome.MATCH] * 7 + [Outcome.DAILY_LIMIT]


# --- Client limits ---------------------------------------------------------------------------


def test_it_throttles_enumeration_by_misses(invoice: Invoice, settings: Any) -> None:
    settings.PIAOTONG_VERIFY_MISS_LIMIT_ANON = 3
    guesser = Requester(None, "203.0.113.66")
    today = timezone.localdate().isoformat()
    guesses = [f"2611200000000000{n:04d}" for n in range(100, 104)]
    outcomes = [do_verify_digital(guesser, g, today, "1").outcome for g in guesses]
    assert outcomes == [Outcome.NOT_FOUND] * 3 + [Outcome.THROTTLED]
    # Blocked for the rest of the hour, even for an invoice that exists...
    blocked = check(guesser, invoice)
    assert blocked.outcome == Outcome.THROTTLED and blocked.retry_after > 0
    # ...while another client is unaffected.
    assert check(Requester(None, "203.0.113.67"), invoice).outcome == Outcome.MATCH


def test_it_throttles_a_client_over_the_rate(invoice: Invoice, settings: Any) -> None:
    settings.PIAOTONG_VERIFY_RATE_ANON = 2
    settings.PIAOTONG_VERIFY_DAILY_LIMIT = 100
    client = Requester(None, "203.0.113.80")
    outcomes = [check(client, invoice).outcome for _ in range(3)]
    # The window is one minute: the third may fall into the next minute on a slow run.
    assert outcomes[:2] == [Outcome.MATCH] * 2
    if outcomes[2] == Outcome.THROTTLED:
        assert VerificationLog.objects.filter(outcome=Outcome.THROTTLED).count() == 1


def test_it_limits_a_logged_in_user_by_account_not_address(
    stranger: User, invoice: Invoice, settings: Any
) -> None:
    settings.PIAOTONG_VERIFY_MISS_LIMIT_USER = 1
    settings.PIAOTONG_VERIFY_MISS_LIMIT_ANON = 50
    check(as_requester(stranger, "10.0.0.1"), invoice, total_with_tax="2")
    refused = check(as_requester(stranger, "10.0.0.2"), invoice)
    assert refused.outcome == Outcome.THROTTLED
    assert check(Requester(None, "10.0.0.1"), invoice).outcome == Outcome.MATCH


# --- The log ---------------------------------------------------------------------------------


def test_it_logs_every_check_with_the_address_hashed(stranger: User, invoice: Invoice) -> None:
    check(as_requester(stranger, "198.51.100.23"), invoice, total_with_tax="5")
    entry = VerificationLog.objects.get()
    assert entry.outcome == Outcome.MISMATCH
    assert entry.invoice_id == invoice.pk
    assert entry.differing == "total_with_tax"
    assert entry.principal == f"user:{stranger.pk}"
    assert entry.ip_hash and "198.51.100.23" not in entry.ip_hash
    assert entry.ip_hash == limits.hash_ip("198.51.100.23")
    assert not VerificationLog.objects.filter(ip_hash__contains="198.51").exists()


@pytest.mark.django_db(transaction=True)
def test_a_check_does_not_wait_for_the_disk_but_leaves_the_connection_as_it_was(
    invoice: Invoice,
) -> None:
    from django.db import connection

    def synchronous() -> int | None:
        if connection.vendor != "sqlite":
            return None
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous")
            return int(cursor.fetchone()[0])

    before = synchronous()
    assert check(Requester(None, "192.0.2.1"), invoice).outcome == Outcome.MATCH
    assert synchronous() == before
    assert VerificationLog.objects.filter(outcome=Outcome.MATCH).count() == 1
