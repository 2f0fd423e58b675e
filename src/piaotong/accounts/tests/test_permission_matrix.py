"""The permission matrix (权限矩阵), one table, enforced through both the web UI and the API.

Each row: a role, an operation, and whether the role may do it within its own organisation.
Every allowed cell must succeed and every denied cell must be refused, through both faces; and a
user of another organisation holding the same role must get 404 on organisation A's invoices
(no IDOR: not even a 403 that would reveal the invoice exists). docs/security.md shows the same
table for people; a change to one without the other fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.test import Client, override_settings

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices import actions
from piaotong.invoices.models import Invoice
from piaotong.lib.taxid import compose_uscc
from piaotong.testing import SOFTWARE_SERVICE, make_bureau, make_org, make_user

pytestmark = pytest.mark.django_db

ROLES = [
    Role.CLERK,
    Role.REVIEWER,
    Role.FINANCE_MANAGER,
    Role.AUDITOR,
    Role.ORG_ADMIN,
    Role.TAX_OFFICER,
    Role.PLATFORM_ADMIN,
]
C, R, F, A, ADMIN, T, P = ROLES

# operation -> roles allowed within their own organisation
MATRIX: dict[str, set[Role]] = {
    "list invoices": {C, R, F, A, ADMIN, T},
    "view an invoice": {C, R, F, A, ADMIN, T},
    "save a draft": {C, F},
    "issue an invoice": {C, F},
    "approve a draft under review": {R, F},
    "reject a draft under review": {R, F},
    "request a red-letter invoice": {F},
    "view received invoices": {C, R, F, A, ADMIN},
    "book a received invoice": {F},
    "view the VAT return": {F, A, ADMIN},
    "flag an invoice 失控/异常 (at the hub)": {T},
}
# Operations of the authority side: every role holds its role in the tax bureau of the seller's
# region (its "own organisation" there), and the requests go to the hub node.
AUTHORITY_OPERATIONS = {"flag an invoice 失控/异常 (at the hub)"}
BUYER = compose_uscc("9", "1", "310115", "MA1BUYER")
LINE = {"tax_code": SOFTWARE_SERVICE, "item_name": "维护", "tax_rate": "0.06", "amount": "100"}
BODY = {"kind": "digital_special", "buyer_name": "上海买方", "buyer_tax_id": BUYER, "lines": [LINE]}


def form(seller: Organisation, intent: str) -> dict[str, str]:
    data = {
        "intent": intent,
        "seller": str(seller.pk),
        "kind": "digital_special",
        "buyer_kind": "organisation",
        "buyer_name": "上海买方",
        "buyer_tax_id": BUYER,
        "lines-TOTAL_FORMS": "1",
        "lines-INITIAL_FORMS": "0",
    }
    return data | {f"lines-0-{k}": v for k, v in LINE.items()}


@dataclass
class World:
    org: Organisation
    other: Organisation
    author: User  # a finance manager of org who drafts the invoices under review
    issued: Invoice
    pending: Invoice
    received: Invoice  # issued to org by a Beijing supplier: org's purchase
    bureau: Organisation  # the tax bureau (税务机关) of org's region


@pytest.fixture
def world(db: Any) -> World:
    org = make_org("北京矩阵科技有限公司", "110108", "MA01MTRX", requires_dual_review=False)
    other = make_org("北京他方科技有限公司", "110105", "MA01THER")
    author = make_user("author", org, Role.FINANCE_MANAGER)
    actor = actor_for_user(author)
    issued = actions.do_issue_new_invoice(actor, org, actions_draft())
    pending = actions.do_create_draft(actor, org, actions_draft(), submit=True)
    supplier = make_org("北京供应商科技有限公司", "110105", "MA01GYK1")
    supplier_clerk = actor_for_user(make_user("supplier-clerk", supplier, Role.CLERK))
    from piaotong.testing import draft

    received = actions.do_issue_new_invoice(supplier_clerk, supplier, draft(org))
    bureau = make_bureau("国家税务总局北京市税务局", "110000", "00000BJ1")
    return World(org, other, author, issued, pending, received, bureau)


PERIOD = "{:%Y%m}".format(__import__("datetime").date.today())
FLAG = {"flag": "abnormal", "reason": "发票信息异常"}


def at_hub(call: Any) -> Any:
    with override_settings(PIAOTONG_NODE_ID="hub", PIAOTONG_REGION="00", PIAOTONG_NODE_ROLE="hub"):
        return call()


def actions_draft() -> Any:
    from piaotong.testing import draft

    return draft(buyer_name="上海买方", buyer_tax_id=BUYER)


# Each operation through the UI and through the API: (client, world) -> response.
Call = Callable[[Client, World], Any]
UI: dict[str, Call] = {
    "list invoices": lambda c, w: c.get("/invoices/"),
    "view an invoice": lambda c, w: c.get(f"/invoices/{w.issued.uid}/"),
    "save a draft": lambda c, w: c.post("/invoices/new/", form(w.org, "draft")),
    "issue an invoice": lambda c, w: c.post("/invoices/new/", form(w.org, "issue")),
    "approve a draft under review": lambda c, w: c.post(f"/invoices/{w.pending.uid}/approve/"),
    "reject a draft under review": lambda c, w: c.post(
        f"/invoices/{w.pending.uid}/reject/", {"reason": "错"}
    ),
    "request a red-letter invoice": lambda c, w: c.post(
        f"/invoices/{w.issued.uid}/red-letter/", {"side": "seller", "reason": "01", "scope": "full"}
    ),
    "view received invoices": lambda c, w: c.get("/deduction/"),
    "book a received invoice": lambda c, w: c.post(f"/deduction/invoices/{w.received.uid}/book/"),
    "view the VAT return": lambda c, w: c.get(f"/filing/{PERIOD}/?org={w.org.pk}"),
    "flag an invoice 失控/异常 (at the hub)": lambda c, w: at_hub(
        lambda: c.post(f"/invoices/{w.issued.uid}/authority/", {"intent": "set", **FLAG})
    ),
}


def api_post(client: Client, path: str, body: Any) -> Any:
    return client.post(path, orjson.dumps(body), content_type="application/json")


API: dict[str, Call] = {
    "list invoices": lambda c, w: c.get("/api/v1/invoices"),
    "view an invoice": lambda c, w: c.get(f"/api/v1/invoices/{w.issued.uid}"),
    "save a draft": lambda c, w: api_post(
        c, "/api/v1/invoices/drafts", BODY | {"seller_tax_id": w.org.tax_id}
    ),
    "issue an invoice": lambda c, w: api_post(
        c, "/api/v1/invoices", BODY | {"seller_tax_id": w.org.tax_id}
    ),
    "approve a draft under review": lambda c, w: api_post(
        c, f"/api/v1/invoices/{w.pending.uid}/approve", {}
    ),
    "reject a draft under review": lambda c, w: api_post(
        c, f"/api/v1/invoices/{w.pending.uid}/reject", {"reason": "错"}
    ),
    "request a red-letter invoice": lambda c, w: api_post(
        c,
        f"/api/v1/invoices/{w.issued.uid}/red-letter",
        {"side": "seller", "reason": "01", "full": True},
    ),
    "view received invoices": lambda c, w: c.get("/api/v1/deduction/received"),
    "book a received invoice": lambda c, w: api_post(
        c, f"/api/v1/deduction/received/{w.received.uid}/book", {}
    ),
    "view the VAT return": lambda c, w: c.get(
        f"/api/v1/filing/{PERIOD}", {"organisation": w.org.pk}
    ),
    "flag an invoice 失控/异常 (at the hub)": lambda c, w: at_hub(
        lambda: api_post(c, f"/api/v1/invoices/{w.issued.uid}/authority-flag", FLAG)
    ),
}


def succeeded(response: Any) -> bool:
    if response.status_code == 302:  # the UI redirects after a successful POST (PRG)
        return "/accounts/login" not in response["Location"]
    return response.status_code in {200, 201}


def refused(response: Any) -> bool:
    return response.status_code in {403, 404}


def as_role(world: World, role: Role, organisation: Organisation | None = None) -> Client:
    client = Client()
    client.force_login(make_user(f"u-{role.value}", organisation or world.org, role))
    return client


CELLS = [(op, role, face) for op in MATRIX for role in ROLES for face in ("ui", "api")]


@pytest.mark.parametrize(("operation", "role", "face"), CELLS)
def test_it_enforces_the_matrix(world: World, operation: str, role: Role, face: str):
    organisation = world.bureau if operation in AUTHORITY_OPERATIONS else None
    response = (UI if face == "ui" else API)[operation](as_role(world, role, organisation), world)
    if role in MATRIX[operation]:
        assert succeeded(response), (response.status_code, response.content[:300])
    else:
        assert refused(response), (response.status_code, response.content[:300])


OWN_INVOICE_OPERATIONS = [
    "view an invoice",
    "approve a draft under review",
    "reject a draft under review",
]


@pytest.mark.parametrize(
    ("operation", "role", "face"),
    [(op, role, face) for op in OWN_INVOICE_OPERATIONS for role in ROLES for face in ("ui", "api")],
)
def test_it_answers_404_to_every_role_of_another_organisation(
    world: World, operation: str, role: Role, face: str
):
    client = as_role(world, role, organisation=world.other)
    response = (UI if face == "ui" else API)[operation](client, world)
    assert response.status_code == 404
    world.pending.refresh_from_db()
    assert world.pending.status == "pending_review"


def test_it_matches_the_table_in_docs_security_md():
    doc = (Path(__file__).resolve().parents[4] / "docs" / "security.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| ") and "|" in line[2:]]
    table = {
        cells[0]: cells[1:]
        for cells in ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    }
    header = table.pop("operation")
    assert header == [role.value for role in ROLES]
    for operation, allowed in MATRIX.items():
        assert table[operation] == ["yes" if role in allowed else "no" for role in ROLES], operation
