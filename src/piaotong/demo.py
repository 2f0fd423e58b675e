"""Demo data (演示数据): organisations in several regions, a user for every role, invoices.

Idempotent: organisations and users are looked up by their fixed identifiers, and invoices are
issued only up to the target count, so running it twice leaves the same data.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.actions import do_create_user, do_grant_role, do_register_organisation
from piaotong.accounts.choices import OrganisationKind, Role, TaxpayerKind
from piaotong.accounts.models import Organisation, User
from piaotong.invoices.actions import (
    do_approve_invoice,
    do_create_draft,
    do_issue_invoices,
    do_submit_for_review,
)
from piaotong.invoices.choices import BuyerKind, InvoiceKind
from piaotong.invoices.models import Invoice
from piaotong.invoices.rules import InvoiceDraft, LineDraft
from piaotong.lib.money import rates_for_taxpayer
from piaotong.lib.taxcodes import TAX_CODES
from piaotong.lib.taxid import compose_uscc

DEMO_PASSWORD = "piaotong-demo-2026"  # noqa: S105 - printed for the demo, documented in the README


@dataclass(frozen=True)
class DemoOrg:
    key: str
    name: str
    area: str
    org8: str
    kind: str = TaxpayerKind.GENERAL
    dual_review: bool = False
    organisation_kind: str = OrganisationKind.TAXPAYER

    @property
    def tax_id(self) -> str:
        # A tax bureau is a state organ (registering authority 1, kind 1); taxpayers are
        # companies registered with the market regulator (9, 1).
        if self.organisation_kind == OrganisationKind.TAX_BUREAU:
            return compose_uscc("1", "1", self.area, self.org8)
        return compose_uscc("9", "1", self.area, self.org8)


ORGS = [
    DemoOrg("yunfan", "北京云帆软件有限公司", "110108", "MA01YF01"),
    DemoOrg("jinghua", "北京京华餐饮管理有限公司", "110105", "MA01JH02", TaxpayerKind.SMALL_SCALE),
    DemoOrg("mingde", "北京明德咨询有限公司", "110101", "MA01MD03", dual_review=True),
    DemoOrg("pujiang", "上海浦江贸易有限公司", "310115", "MA1PJ004"),
    DemoOrg("lingnan", "广州岭南物流有限公司", "440106", "MA5LN005"),
    DemoOrg(
        "bureau",
        "国家税务总局北京市税务局",
        "110000",
        "00000BJ1",
        organisation_kind=OrganisationKind.TAX_BUREAU,
    ),
    DemoOrg(
        "platform",
        "北京票通平台运营有限公司",
        "110108",
        "MA01PT00",
        organisation_kind=OrganisationKind.PLATFORM,
    ),
]
# username, organisation key, role, full name
USERS = [
    ("clerk", "yunfan", Role.CLERK, "张开票"),
    ("reviewer", "yunfan", Role.REVIEWER, "李复核"),
    ("finance", "yunfan", Role.FINANCE_MANAGER, "王财务"),
    ("auditor", "yunfan", Role.AUDITOR, "赵审计"),
    ("admin", "yunfan", Role.ORG_ADMIN, "钱管理"),
    ("officer", "bureau", Role.TAX_OFFICER, "孙税务"),
    ("platform", "platform", Role.PLATFORM_ADMIN, "林平台"),
    ("mingde.clerk", "mingde", Role.CLERK, "周开票"),
    ("mingde.reviewer", "mingde", Role.REVIEWER, "吴复核"),
    ("jinghua.clerk", "jinghua", Role.CLERK, "郑开票"),
    ("pujiang.clerk", "pujiang", Role.CLERK, "冯开票"),
    ("lingnan.clerk", "lingnan", Role.CLERK, "陈开票"),
]


def _ensure_org(actor: Actor, spec: DemoOrg) -> Organisation:
    existing = Organisation.objects.filter(tax_id=spec.tax_id).first()
    if existing:
        return existing
    return do_register_organisation(
        actor,
        name=spec.name,
        tax_id=spec.tax_id,
        region=spec.area[:2],
        taxpayer_kind=spec.kind,
        address=f"{spec.name[:2]}市示范路 {spec.org8[-1]} 号",
        phone="010-6000000" + spec.org8[-1],
        bank_name="中国工商银行示范支行",
        bank_account="0200" + spec.org8[-4:].encode().hex()[:12],
        issuing_quota=Decimal("100000000.00"),
        requires_dual_review=spec.dual_review,
        kind=spec.organisation_kind,
    )


def _ensure_user(
    actor: Actor, username: str, org: Organisation, role: Role, full_name: str
) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = do_create_user(actor, username, DEMO_PASSWORD, full_name=full_name)
    do_grant_role(actor, user, org, role)
    return user


def _line(rng: random.Random, taxpayer_kind: str) -> LineDraft:
    allowed = rates_for_taxpayer(taxpayer_kind)  # type: ignore[arg-type]
    codes = [
        c
        for c in TAX_CODES.values()
        if set(c.rates) & allowed and not set(c.rates) <= {"exempt", "non_taxable"}
    ]
    code = rng.choice(codes)
    rate = max(
        (r for r in code.rates if r in allowed and r not in {"exempt", "non_taxable"}), key=Decimal
    )
    return LineDraft(
        tax_code=code.code,
        item_name=code.name,
        tax_rate=rate,
        unit="项",
        quantity=Decimal(rng.randint(1, 20)),
        unit_price=Decimal(rng.randint(1000, 500000)) / 100,
    )


def _draft(rng: random.Random, seller: Organisation, buyers: list[Organisation]) -> InvoiceDraft:
    lines = [_line(rng, seller.taxpayer_kind) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.2:
        return InvoiceDraft(
            kind=InvoiceKind.DIGITAL_ORDINARY,
            buyer_kind=BuyerKind.PERSON,
            buyer_name=rng.choice(["刘先生", "陈女士", "个人"]),
            lines=lines,
        )
    buyer = rng.choice([b for b in buyers if b.pk != seller.pk])
    kind = rng.choice([InvoiceKind.DIGITAL_SPECIAL, InvoiceKind.DIGITAL_ORDINARY])
    return InvoiceDraft(
        kind=kind,
        buyer_name=buyer.name,
        buyer_tax_id=buyer.tax_id,
        lines=lines,
        remarks=rng.choice(["", f"合同号 HT-2026-{rng.randint(1, 999):03d}"]),
    )


def _clerk_of(org_key: str) -> str:
    return next(name for name, key, role, _ in USERS if key == org_key and role == Role.CLERK)


def load_demo(
    invoices_per_org: int = 80, progress: Callable[[str], None] = print
) -> dict[str, int]:
    operator = Actor()
    orgs = {spec.key: _ensure_org(operator, spec) for spec in ORGS}
    users = {u[0]: _ensure_user(operator, u[0], orgs[u[1]], u[2], u[3]) for u in USERS}
    rng = random.Random(2026)
    buyers = [orgs[s.key] for s in ORGS if s.organisation_kind == OrganisationKind.TAXPAYER]
    issued = 0
    # Organisations of other regions are buyers here: their invoices are issued by their own
    # region's node, which owns the numbers of that region.
    sellers = [s for s in ORGS if s.organisation_kind == OrganisationKind.TAXPAYER]
    for spec in (s for s in sellers if s.area[:2] == settings.PIAOTONG_REGION):
        seller = orgs[spec.key]
        missing = (
            invoices_per_org - Invoice.objects.filter(seller=seller, number__isnull=False).count()
        )
        if missing <= 0:
            continue
        drafts = [_draft(rng, seller, buyers) for _ in range(missing)]
        clerk = actor_for_user(users[_clerk_of(spec.key)])
        if spec.dual_review:
            reviewer = actor_for_user(users["mingde.reviewer"])
            for draft in drafts:
                do_approve_invoice(
                    reviewer, do_submit_for_review(clerk, do_create_draft(clerk, seller, draft))
                )
        else:
            do_issue_invoices(clerk, seller, drafts)
        issued += missing
        progress(f"{seller.name}: {missing} invoices issued")
    return {"organisations": len(orgs), "users": len(users), "invoices_issued": issued}
