"""Fixtures of the filing tests: the deduction tests' Beijing buyer, and org A's finance
manager, who prepares and submits org A's returns. Invoices are issued today through the
issuing actions and then dated into last month (`backdate`), since a return is submitted
only after its period ended."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation
from piaotong.deduction.periods import period_of
from piaotong.deduction.tests.conftest import (  # noqa: F401 - fixtures shared with deduction
    buyer,
    buyer_actor,
    buyer_auditor,
    buyer_clerk,
    buyer_finance,
    issue,
)
from piaotong.invoices.models import Invoice
from piaotong.testing import make_user


@pytest.fixture
def seller_finance(org_a: Organisation) -> Actor:
    return actor_for_user(make_user("seller.finance", org_a, Role.FINANCE_MANAGER))


def last_month_day() -> date:
    return timezone.localdate().replace(day=1) - timedelta(days=1)


def last_month() -> str:
    return period_of(last_month_day())


def backdate(*invoices: Invoice, day: date | None = None) -> None:
    """Date invoices into last month: stands for invoices issued then (test set-up only)."""
    Invoice.objects.filter(pk__in=[i.pk for i in invoices]).update(
        issue_date=day or last_month_day(),
        issued_at=timezone.now() - timedelta(days=40),
    )


@pytest.fixture
def last_period() -> Any:
    return last_month()
