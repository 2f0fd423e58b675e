"""Personas of the red-letter and void tests.

A's finance manager (财务负责人) files and answers red-letter requests for the seller; C is a
buyer in Beijing, served by this node (region 11) like A, with its own finance manager and
clerk; B (Shanghai) is a buyer served by another node, whose answers arrive by the exchange.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.choices import BuyerKind, InvoiceKind
from piaotong.invoices.models import Invoice
from piaotong.testing import draft, line, make_org, make_user


@pytest.fixture
def org_c(db: Any) -> Organisation:
    return make_org("北京采购服务有限公司", "110105", "MA01BUY3")


@pytest.fixture
def finance_a(org_a: Organisation) -> User:
    return make_user("finance.a", org_a, Role.FINANCE_MANAGER)


@pytest.fixture
def finance_c(org_c: Organisation) -> User:
    return make_user("finance.c", org_c, Role.FINANCE_MANAGER)


@pytest.fixture
def finance_b(org_b: Organisation) -> User:
    return make_user("finance.b", org_b, Role.FINANCE_MANAGER)


@pytest.fixture
def clerk_c(org_c: Organisation) -> User:
    return make_user("clerk.c", org_c, Role.CLERK)


@pytest.fixture
def seller(finance_a: User) -> Actor:
    return actor_for_user(finance_a)


@pytest.fixture
def buyer(finance_c: User) -> Actor:
    return actor_for_user(finance_c)


def two_lines() -> list[Any]:
    """1000.00 + 60.00 at 6%, and 3 × 4999.99 = 14999.97 + 1950.00 at 13%."""
    return [
        line(),
        line(
            tax_code="1090511030000000000",
            item_name="笔记本电脑",
            tax_rate="13%",
            quantity=Decimal("3"),
            unit_price=Decimal("4999.99"),
        ),
    ]


@pytest.fixture
def blue(org_a: Organisation, org_c: Organisation, seller: Actor) -> Invoice:
    """A 数电专票 from A to C with two lines (total 16009.97 + tax 2010.00)."""
    return do_issue_new_invoice(seller, org_a, draft(org_c, lines=two_lines()))


@pytest.fixture
def blue_to_b(org_a: Organisation, org_b: Organisation, seller: Actor) -> Invoice:
    """A 数电专票 from A (Beijing, this node) to B (Shanghai, another node)."""
    return do_issue_new_invoice(seller, org_a, draft(org_b))


@pytest.fixture
def blue_to_person(org_a: Organisation, seller: Actor) -> Invoice:
    """A 数电普票 to a natural person: nobody books or deducts it."""
    return do_issue_new_invoice(
        seller,
        org_a,
        draft(
            kind=InvoiceKind.DIGITAL_ORDINARY,
            buyer_kind=BuyerKind.PERSON,
            buyer_name="张三",
            buyer_tax_id="",
        ),
    )


def paper(org_a: Organisation, seller: Actor, buyer: Organisation | None = None) -> Invoice:
    if buyer is None:
        return do_issue_new_invoice(
            seller,
            org_a,
            draft(
                kind=InvoiceKind.PAPER_ORDINARY,
                buyer_kind=BuyerKind.PERSON,
                buyer_name="李四",
                buyer_tax_id="",
            ),
        )
    return do_issue_new_invoice(seller, org_a, draft(buyer, kind=InvoiceKind.PAPER_SPECIAL))
