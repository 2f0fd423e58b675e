"""Fixtures of the verification tests: an invoice issued by org A (Beijing) to org B (Shanghai),
and the requesters who check it: an anonymous visitor, A's clerk, B's clerk (the buyer's side),
and a stranger, a clerk of an organisation that is neither seller nor buyer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.testing import draft, line, make_org, make_user
from piaotong.verification.actions import Requester
from piaotong.verification.choices import VerifyChannel


@pytest.fixture
def invoice(clerk: User, org_a: Organisation, org_b: Organisation) -> Invoice:
    """1,000.00 + 6 % tax = 1,060.00, issued today."""
    issued = do_issue_new_invoice(
        actor_for_user(clerk),
        org_a,
        draft(org_b, lines=[line(quantity=Decimal("2"), unit_price=Decimal("500"))]),
    )
    assert issued.total_with_tax == Decimal("1060.00")
    return issued


@pytest.fixture
def other_org(db: Any) -> Organisation:
    return make_org("广州无关商贸有限公司", "440106", "MA5TRNGX")


@pytest.fixture
def stranger(other_org: Organisation) -> User:
    return make_user("stranger", other_org, Role.CLERK)


@pytest.fixture
def anonymous() -> Requester:
    return Requester(None, "203.0.113.7", VerifyChannel.WEB)


@pytest.fixture
def buyer_clerk(outsider: User) -> User:
    """`outsider` of conftest is B's clerk: here B is the buyer, so a party."""
    return outsider


def as_requester(user: User, ip: str = "198.51.100.1") -> Requester:
    return Requester(actor_for_user(user), ip, VerifyChannel.WEB)
