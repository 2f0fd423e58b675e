"""Factories for tests and benchmarks: organisations, users and drafts built through actions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from piaotong.accounts.access import Actor
from piaotong.accounts.actions import do_create_user, do_grant_role, do_register_organisation
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.choices import InvoiceKind
from piaotong.invoices.rules import InvoiceDraft, LineDraft
from piaotong.lib.taxid import compose_uscc

SOFTWARE_SERVICE = "3040201030000000000"
OPERATOR = Actor()


def make_org(name: str, area: str, org8: str, **extra: Any) -> Organisation:
    return do_register_organisation(
        OPERATOR, name=name, tax_id=compose_uscc("9", "1", area, org8), region=area[:2], **extra
    )


def make_user(username: str, org: Organisation, *roles: Role) -> User:
    user = do_create_user(OPERATOR, username, "correct-horse-battery", full_name=username)
    for role in roles:
        do_grant_role(OPERATOR, user, org, role)
    return user


def line(**overrides: Any) -> LineDraft:
    values: dict[str, Any] = {
        "tax_code": SOFTWARE_SERVICE,
        "item_name": "软件维护费",
        "tax_rate": "0.06",
        "quantity": Decimal("2"),
        "unit_price": Decimal("500"),
        "unit": "次",
    }
    return LineDraft(**(values | overrides))


def draft(buyer: Organisation | None = None, **overrides: Any) -> InvoiceDraft:
    values: dict[str, Any] = {
        "kind": InvoiceKind.DIGITAL_SPECIAL,
        "buyer_name": buyer.name if buyer else "上海测试贸易有限公司",
        "buyer_tax_id": buyer.tax_id if buyer else compose_uscc("9", "1", "310115", "MA1TEXT2"),
        "lines": [line()],
    }
    return InvoiceDraft(**(values | overrides))
