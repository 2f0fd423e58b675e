"""The return pages through URLs: the draft page, drill-down to every invoice, prepare / submit
/ amend, differences, exports (Excel, JSON, XML), reminders, and access."""

from __future__ import annotations

import io
import json
from typing import Any

import openpyxl
import pytest
from django.core.management import call_command
from django.urls import reverse
from lxml import etree

from piaotong.accounts.choices import Role
from piaotong.filing.export import NAMESPACE
from piaotong.filing.models import VatReturn
from piaotong.filing.tests.conftest import backdate, last_month
from piaotong.ledger.models import AuditEntry
from piaotong.testing import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def seller_manager(org_a):
    return make_user("seller.manager", org_a, Role.FINANCE_MANAGER)


def url(name: str, period: str, **kwargs: Any) -> str:
    return reverse(f"filing:{name}", kwargs={"period": period, **kwargs})


def test_the_draft_page_shows_the_numbers_and_drills_down_to_the_invoices(
    client, issue, seller_manager
):
    invoices = [issue() for _ in range(3)]
    backdate(*invoices)
    client.force_login(seller_manager)
    page = client.get(url("period", last_month())).content.decode()
    assert "180.00" in page  # 3 x 60.00 output tax
    drill = client.get(url("drill", last_month()), {"part": "output", "rates": "general"})
    body = drill.content.decode()
    assert all(invoice.number in body for invoice in invoices)
    assert client.get(url("drill", last_month()), {"part": "nonsense"}).status_code == 404


def test_prepare_submit_amend_and_show_the_differences(client, issue, seller_manager):
    period = last_month()
    backdate(issue())
    client.force_login(seller_manager)
    client.post(url("step", period, verb="prepare"))
    client.post(url("step", period, verb="submit"))
    assert VatReturn.objects.get().status == "submitted"
    backdate(issue())
    stale = client.get(url("period", period)).content.decode()
    assert "此版本之后发票或抵扣已变化" in stale
    client.post(url("step", period, verb="amend"), {"reason": "late invoice"})
    client.post(url("step", period, verb="submit"))
    assert list(VatReturn.objects.order_by("version").values_list("status", flat=True)) == [
        "superseded",
        "submitted",
    ]
    page = client.get(url("period", period), {"version": 2}).content.decode()
    assert "60.00 → 120.00" in page


def test_exports_are_complete_and_audited(client, issue, seller_manager):
    period = last_month()
    invoices = [issue() for _ in range(2)]
    backdate(*invoices)
    client.force_login(seller_manager)
    client.post(url("step", period, verb="prepare"))
    document = json.loads(client.get(url("export", period, version=1, fmt="json")).content)
    assert document["schema"] == "piaotong.vat_return" and document["version"] == 1
    lines = {line["name"]: line["value"] for line in document["lines"]}
    assert lines["output_tax"] == "120.00"
    xml = etree.fromstring(client.get(url("export", period, version=1, fmt="xml")).content)
    assert xml.find(f"{{{NAMESPACE}}}Lines/{{{NAMESPACE}}}Line[@name='payable']").text == "120.00"
    response = client.get(url("export", period, version=1, fmt="xlsx"))
    workbook = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    rows = list(workbook["发票明细 Invoices"].iter_rows(min_row=2, values_only=True))
    assert {row[1] for row in rows} == {i.number for i in invoices}
    assert AuditEntry.objects.filter(action="return.exported").count() >= 3


def test_other_organisations_and_roles(client, issue, outsider, clerk, org_a, auditor):
    backdate(issue())
    client.force_login(outsider)
    assert client.get(url("period", last_month()), {"org": org_a.pk}).status_code == 404
    assert client.get(reverse("filing:overview"), {"org": org_a.pk}).status_code == 404
    client.force_login(clerk)  # a clerk has no VIEW_RETURN
    assert client.get(reverse("filing:overview")).status_code == 403
    client.force_login(auditor)  # reads, never prepares
    assert client.get(url("period", last_month())).status_code == 200
    assert client.post(url("step", last_month(), verb="prepare")).status_code in {403, 404}
    assert not VatReturn.objects.exists()


def test_reminders_banner_and_command(client, org_a, seller_manager, capsys):
    client.force_login(seller_manager)
    page = client.get(reverse("filing:overview")).content.decode()
    assert last_month() in page
    call_command("filing", "reminders", "--today", "2025-04-10", "--json")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    mine = [line for line in lines if line["tax_id"] == org_a.tax_id]
    assert mine == [
        {
            "organisation": org_a.name,
            "tax_id": org_a.tax_id,
            "period": "202503",
            "deadline": "2025-04-15",
            "days_left": 5,
            "overdue": False,
        }
    ]
    call_command("filing", "reminders", "--today", "2025-04-16")
    assert "OVERDUE" in capsys.readouterr().out
