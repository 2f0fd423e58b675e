"""Fixtures of the documents tests: issued invoices of org A to org B, and their documents."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from piaotong.documents.actions import signed_invoice
from piaotong.documents.content import SignedInvoice, build_signed_invoice
from piaotong.invoices.actions import do_issue_new_invoice
from piaotong.invoices.models import Invoice
from piaotong.ledger.keys import node_key
from piaotong.lib import signing
from piaotong.lib.canonical import canonical_json
from piaotong.testing import draft, line

HARDWARE = "1090511030000000000"  # *计算机*, 13%


@pytest.fixture
def issued(org_a, org_b, clerk_actor, media_root) -> Invoice:
    """A 数电专票 of A (Beijing) to B with two lines and remarks, issued through the action."""
    return do_issue_new_invoice(
        clerk_actor,
        org_a,
        draft(
            org_b,
            lines=[
                line(),
                line(
                    tax_code=HARDWARE,
                    item_name="笔记本电脑",
                    spec="X1-2026",
                    unit="台",
                    tax_rate="0.13",
                    quantity=Decimal("3"),
                    unit_price=Decimal("4999.99"),
                ),
            ],
            remarks="合同号 HT-2026-001",
        ),
    )


@pytest.fixture
def signed(issued) -> SignedInvoice:
    return signed_invoice(issued)


def public_keys(key_id: str) -> bytes | None:
    """A key lookup that knows this process's node key only (no database)."""
    key = node_key()
    return key.public_key if key_id == key.key_id else None


def red_signed(blue: SignedInvoice) -> SignedInvoice:
    """A red-letter (红字) version of `blue`: negated amounts, signed by the node key.

    Red-letter issuing is another app's action; the documents only need its payload and the
    blue invoice's number.
    """
    payload: dict[str, Any] = dict(blue.payload)
    payload["number"] = blue.number[:-1] + ("9" if blue.number[-1] != "9" else "8")
    payload["lines"] = [
        {
            **item,
            "amount": f"-{item['amount']}",
            "tax": f"-{item['tax']}",
            "quantity": f"-{item['quantity']}" if item["quantity"] else None,
        }
        for item in blue.payload["lines"]
    ]
    for name in ("total_amount", "total_tax", "total_with_tax"):
        payload[name] = f"-{payload[name]}"
    key = node_key()
    signature = signing.sign(key.private_key, canonical_json(payload))
    return build_signed_invoice(payload, signature, key.key_id, blue.number, key)


@pytest.fixture
def signed_without_db() -> SignedInvoice:
    """A signed invoice built without any database row, for the no-database CLI path."""
    key = node_key()
    payload: dict[str, Any] = {
        "schema": "piaotong.invoice",
        "version": 1,
        "number": "26112000000000000077",
        "kind": "digital_special",
        "platform_kind": "81",
        "issue_date": "2026-01-05",
        "seller": {
            "name": "北京测试科技有限公司",
            "tax_id": "91110108MA01TEXT1X",
            "address": "",
            "bank": "",
        },
        "buyer": {
            "kind": "organisation",
            "name": "上海测试贸易有限公司",
            "tax_id": "91310115MA1TEXT22Y",
            "address": "",
            "bank": "",
        },
        "lines": [
            {
                "position": 1,
                "kind": 0,
                "tax_code": "3040201030000000000",
                "name": "*信息技术服务*软件维护费",
                "spec": "",
                "unit": "次",
                "quantity": "1",
                "unit_price": "16990.54",
                "amount": "16990.54",
                "tax_rate": "0.06",
                "tax": "1019.43",
            },
        ],
        "total_amount": "16990.54",
        "total_tax": "1019.43",
        "total_with_tax": "18009.97",
        "remarks": "",
        "issuer": "张三",
        "reviewer": "",
    }
    signature = signing.sign(key.private_key, canonical_json(payload))
    return build_signed_invoice(payload, signature, key.key_id, "", key)
