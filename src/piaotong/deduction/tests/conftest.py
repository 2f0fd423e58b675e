"""Fixtures of the deduction tests: a Beijing buyer (region 11, this node's region) with a
finance manager, and invoices issued to it by org A (Beijing) through the issuing actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.testing import draft, make_org, make_user


@pytest.fixture
def buyer(db: Any) -> Organisation:
    return make_org("北京采购测试有限公司", "110105", "MA01BUYR")


@pytest.fixture
def buyer_finance(buyer: Organisation) -> User:
    return make_user("buyer.finance", buyer, Role.FINANCE_MANAGER)


@pytest.fixture
def buyer_actor(buyer_finance: User) -> Actor:
    return actor_for_user(buyer_finance)


@pytest.fixture
def buyer_clerk(buyer: Organisation) -> User:
    return make_user("buyer.clerk", buyer, Role.CLERK)


@pytest.fixture
def buyer_auditor(buyer: Organisation) -> User:
    return make_user("buyer.auditor", buyer, Role.AUDITOR)


@pytest.fixture
def issue(org_a: Organisation, clerk: User, buyer: Organisation) -> Callable[..., Invoice]:
    """Issue an invoice from org A to the buyer (or to `to`), through the issuing action."""
    actor = actor_for_user(clerk)

    def _issue(to: Organisation | None = None, **overrides: Any) -> Invoice:
        invoice = do_issue_new_invoice(actor, org_a, draft(to or buyer, **overrides))
        invoice.refresh_from_db()
        return invoice

    return _issue


def hub_marks(invoice: Invoice, **fields: Any) -> Invoice:
    """Stand-in for facts other writers record (the hub's 异常/失控 flags, the seller's
    voiding or red-letter status) until those actions exist: tests set the columns directly."""
    Invoice.objects.filter(pk=invoice.pk).update(**fields)
    invoice.refresh_from_db()
    return invoice
