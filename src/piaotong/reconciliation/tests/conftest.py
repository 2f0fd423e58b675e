"""Personas and data of reconciliation: a Beijing buyer whose finance team reconciles, a Beijing
seller that issues to it, and helpers that write spreadsheets the way finance software does."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.testing import draft, line, make_org, make_user

HEADER = ["发票号码", "开票日期", "销售方纳税人识别号", "销售方名称", "金额", "税额", "价税合计"]


@pytest.fixture
def buyer(db: Any) -> Organisation:
    return make_org("北京采购测试有限公司", "110105", "MA01BUY1")


@pytest.fixture
def seller(db: Any) -> Organisation:
    return make_org("北京供货测试有限公司", "110108", "MA01GHL1")


@pytest.fixture
def seller_clerk(seller: Organisation) -> User:
    return make_user("seller-clerk", seller, Role.CLERK)


@pytest.fixture
def finance(buyer: Organisation) -> User:
    """The buyer's finance manager: reconciles and selects for deduction."""
    return make_user("finance", buyer, Role.FINANCE_MANAGER)


@pytest.fixture
def buyer_auditor(buyer: Organisation) -> User:
    """Views purchases, never reconciles."""
    return make_user("buyer-auditor", buyer, Role.AUDITOR)


@pytest.fixture
def stranger(seller: Organisation) -> User:
    """A clerk of the seller: may reconcile for the seller, never see the buyer's imports."""
    return make_user("stranger", seller, Role.CLERK)


@pytest.fixture
def finance_actor(finance: User) -> Actor:
    return actor_for_user(finance)


@pytest.fixture
def issue(seller: Organisation, seller_clerk: User, buyer: Organisation) -> Callable[..., Invoice]:
    """Issue one invoice from the seller to the buyer; `amount` is the pre-tax amount at 6%."""

    def issue_one(amount: str = "1000", **overrides: Any) -> Invoice:
        lines = [line(quantity=Decimal("1"), unit_price=Decimal(amount))]
        return do_issue_new_invoice(
            actor_for_user(seller_clerk), seller, draft(buyer, lines=lines, **overrides)
        )

    return issue_one


@pytest.fixture
def inline_runs(settings: Any) -> None:
    """Imports run in the request's thread once its transaction commits."""
    settings.PIAOTONG_RECONCILE_INLINE = True


def row_of(invoice: Invoice, **changes: Any) -> list[Any]:
    values = {
        "number": invoice.number,
        "date": invoice.issue_date.isoformat(),
        "tax_id": invoice.seller_tax_id,
        "name": invoice.seller_name,
        "amount": str(invoice.total_amount),
        "tax": str(invoice.total_tax),
        "total": str(invoice.total_with_tax),
    } | changes
    return list(values.values())


def write_csv(
    path: Path,
    rows: Sequence[Sequence[Any]],
    encoding: str = "utf-8-sig",
    header: Sequence[str] = HEADER,
) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(
    path: Path,
    rows: Sequence[Sequence[Any]],
    header: Sequence[str] = HEADER,
    build: Callable[[Any, Any], None] | None = None,
) -> Path:
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("进项")
    sheet.write_row(0, 0, header)
    for index, row in enumerate(rows, start=1):
        for column, value in enumerate(row):
            if isinstance(value, str):
                sheet.write_string(index, column, value)
            elif value is not None:
                sheet.write(index, column, value)
    if build:
        build(workbook, sheet)
    workbook.close()
    return path
