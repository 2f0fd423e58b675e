"""Sync alerts: the region's tax officers are emailed once per episode, not on every poll."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.models import User
from piaotong.exchange.models import OutboxEvent
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.ledger.models import AuditEntry
from piaotong.support.alerts import check_sync_alerts
from piaotong.support.models import SyncAlert
from piaotong.testing import draft

pytestmark = pytest.mark.django_db


@pytest.fixture
def officers(tax_officer: User, shanghai_officer: User) -> None:
    User.objects.filter(pk=tax_officer.pk).update(email="officer@bj.example")
    User.objects.filter(pk=shanghai_officer.pk).update(email="officer@sh.example")


def test_it_emails_the_regions_officers_once_per_episode(
    officers: None, clerk: User, org_a: Any, org_b: Any
) -> None:
    do_issue_new_invoice(actor_for_user(clerk), org_a, draft(org_b))
    assert check_sync_alerts() == []  # a fresh outbox row is no alert
    OutboxEvent.objects.update(created_at=timezone.now() - timedelta(minutes=10))
    raised = check_sync_alerts()
    assert [a.kind for a in raised] == ["outbox_age"] and raised[0].notified == 1
    assert mail.outbox[-1].to == ["officer@bj.example"]
    assert check_sync_alerts() == [] and len(mail.outbox) == 1  # the next poll: no more email

    OutboxEvent.objects.update(published_at=timezone.now(), stream_seq=1)
    cleared = check_sync_alerts()
    assert cleared[0].closed_at is not None and len(mail.outbox) == 2
    assert list(
        AuditEntry.objects.filter(action__startswith="sync.alert").values_list("action", flat=True)
    ) == ["sync.alert_raised", "sync.alert_cleared"]

    do_issue_new_invoice(actor_for_user(clerk), org_a, draft(org_b))
    OutboxEvent.objects.filter(published_at=None).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    assert len(check_sync_alerts()) == 1 and SyncAlert.objects.count() == 2  # a new episode


def test_it_alerts_on_a_peer_whose_events_arrive_late(
    officers: None, settings: Any, clerk: User, org_a: Any, org_b: Any
) -> None:
    from piaotong.exchange.models import InboxEvent
    from piaotong.exchange.tests.conftest import as_node, issue_elsewhere, register

    register("node-11", "11")
    sent = issue_elsewhere(clerk, org_a, org_b)
    with as_node("node-31", "31"):
        sent.deliver()
        InboxEvent.objects.update(occurred_at=timezone.now() - timedelta(seconds=90))
        raised = check_sync_alerts()
    assert [a.kind for a in raised] == ["sync_lag"] and "node-11" in raised[0].detail
    assert mail.outbox[-1].to == ["officer@sh.example"]
