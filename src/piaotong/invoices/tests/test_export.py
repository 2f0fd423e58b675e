"""The Excel export of the invoice list, through its URL, as A's clerk and the outsider of B."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from openpyxl import load_workbook

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices import actions
from piaotong.invoices.export import write_invoices_xlsx
from piaotong.invoices.models import Invoice
from piaotong.ledger.models import AuditEntry
from piaotong.testing import draft, line, make_org, make_user

pytestmark = pytest.mark.django_db


def issue(user: User, seller: Organisation, count: int = 1, **overrides: Any) -> list[Invoice]:
    drafts = [draft(**overrides) for _ in range(count)]
    return actions.do_issue_invoices(actor_for_user(user), seller, drafts)


def workbook_of(response: Any) -> Any:
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="invoices-')
    return load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True)


def rows(workbook: Any, sheet: str) -> list[list[Any]]:
    return [list(row) for row in workbook[sheet].iter_rows(min_row=2, values_only=True)]


def test_it_exports_the_users_invoices_with_their_lines_and_totals(client, clerk, org_a):
    two_lines = [line(), line(item_name="数据服务费", quantity=Decimal("3"), unit="月")]
    (invoice,) = issue(clerk, org_a, lines=two_lines)
    client.force_login(clerk)
    book = workbook_of(client.get(reverse("invoices:export")))
    [row] = rows(book, "发票")
    assert row[0] == invoice.number
    assert row[4:6] == [org_a.name, org_a.tax_id]
    assert row[8:] == [
        float(invoice.total_amount),
        float(invoice.total_tax),
        float(invoice.total_with_tax),
    ]
    lines = rows(book, "明细")
    assert [(r[0], r[1], r[2]) for r in lines] == [
        (invoice.number, 1, "*信息技术服务*软件维护费"),
        (invoice.number, 2, "*信息技术服务*数据服务费"),
    ]
    assert lines[1][5:9] == [3, 500, 1500, "6%"]
    assert sum(r[7] for r in lines) == float(invoice.total_amount)


def test_it_leaves_out_other_organisations_invoices(client, clerk, org_a):
    issue(clerk, org_a)
    neighbour = make_org("北京邻居商贸有限公司", "110105", "MA01NB8R")
    their_clerk = make_user("their-clerk", neighbour, Role.CLERK)
    theirs = issue(their_clerk, neighbour, buyer_name="广州另一家有限公司")[0]
    client.force_login(their_clerk)
    book = workbook_of(client.get(reverse("invoices:export")))
    assert [r[0] for r in rows(book, "发票")] == [theirs.number]
    assert len(rows(book, "明细")) == 1


def test_it_applies_the_list_filters(client, clerk, org_a):
    issue(clerk, org_a, buyer_name="上海买方有限公司")
    (other,) = issue(clerk, org_a, buyer_name="广州另一家有限公司")
    client.force_login(clerk)
    book = workbook_of(client.get(reverse("invoices:export"), {"buyer": "广州"}))
    assert [r[0] for r in rows(book, "发票")] == [other.number]
    assert [r[0] for r in rows(book, "明细")] == [other.number]
    book = workbook_of(client.get(reverse("invoices:export"), {"date_to": "2000-01-01"}))
    assert rows(book, "发票") == []


def test_it_neutralises_buyer_names_that_look_like_formulas(client, clerk, org_a):
    issue(clerk, org_a, buyer_name="=HYPERLINK(1)公司")
    client.force_login(clerk)
    book = workbook_of(client.get(reverse("invoices:export")))
    assert rows(book, "发票")[0][6] == "'=HYPERLINK(1)公司"


def test_it_audits_the_export_for_each_organisation(client, clerk, org_a):
    issue(clerk, org_a, count=2)
    client.force_login(clerk)
    workbook_of(client.get(reverse("invoices:export"), {"buyer": "上海"}))
    entry = AuditEntry.objects.get(action="invoice.exported")
    assert entry.organisation_id == org_a.pk
    assert entry.details == {"filters": {"buyer": "上海"}, "rows": 2}


def test_it_exports_with_the_same_number_of_queries_however_many_invoices(
    client, clerk, org_a, django_assert_max_num_queries
):
    issue(clerk, org_a, count=30)
    client.force_login(clerk)
    with django_assert_max_num_queries(20):
        book = workbook_of(client.get(reverse("invoices:export")))
    assert len(rows(book, "发票")) == 30


def test_it_reports_progress_and_the_row_count(clerk, org_a, monkeypatch):
    issue(clerk, org_a, count=5)
    monkeypatch.setattr("piaotong.invoices.export.CHUNK_SIZE", 2)
    seen: list[int] = []
    count = write_invoices_xlsx(Invoice.objects.all(), io.BytesIO(), seen.append)
    assert count == 5
    assert seen == [2, 4, 5]


def test_it_writes_dates_as_dates(clerk, org_a):
    issue(clerk, org_a)
    output = io.BytesIO()
    write_invoices_xlsx(Invoice.objects.all(), output)
    book = load_workbook(output, read_only=True)
    assert rows(book, "发票")[0][1].date() == Invoice.objects.get().issue_date
    assert isinstance(Invoice.objects.get().issue_date, date)


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get(reverse("invoices:export"))
    assert response.status_code == 302


def test_it_links_the_export_with_the_current_filters_from_the_list(client, clerk, org_a):
    issue(clerk, org_a)
    client.force_login(clerk)
    html = client.get(reverse("invoices:list"), {"buyer": "上海", "page": "1"}).content.decode()
    assert f'href="{reverse("invoices:export")}?buyer=%E4%B8%8A%E6%B5%B7"' in html


def test_it_lets_a_tax_officer_export_the_regions_issued_invoices(
    client, clerk, org_a, tax_officer
):
    (invoice,) = issue(clerk, org_a)
    client.force_login(tax_officer)
    book = workbook_of(client.get(reverse("invoices:export")))
    assert [r[0] for r in rows(book, "发票")] == [invoice.number]
    assert AuditEntry.objects.filter(action="invoice.exported").exists()
