"""The authority side's read (税务机关查阅): a tax officer of the region's bureau reads every
issued invoice of that region's sellers, through the UI and the API; never drafts, never
another region's invoices, and reading grants no right to issue."""

from __future__ import annotations

import pytest
from django.test import Client

from piaotong.invoices.actions import do_create_draft, do_issue_new_invoice
from piaotong.testing import draft

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(org_a, org_b, clerk_actor):
    return do_issue_new_invoice(clerk_actor, org_a, draft(org_b))


def test_it_shows_the_regions_issued_invoices_to_its_tax_officer(
    client: Client, issued, tax_officer
):
    client.force_login(tax_officer)
    assert issued.number in client.get("/invoices/").content.decode()
    assert client.get(f"/invoices/{issued.uid}/").status_code == 200
    api = client.get("/api/v1/invoices").json()
    assert [row["number"] for row in api["results"]] == [issued.number]


def test_it_hides_drafts_from_the_tax_officer(
    client: Client, org_a, org_b, clerk_actor, tax_officer
):
    pending = do_create_draft(clerk_actor, org_a, draft(org_b))
    client.force_login(tax_officer)
    assert client.get(f"/invoices/{pending.uid}/").status_code == 404
    assert client.get(f"/api/v1/invoices/{pending.uid}").status_code == 404


def test_it_hides_other_regions_invoices_from_a_tax_officer(
    client: Client, issued, shanghai_officer
):
    client.force_login(shanghai_officer)
    assert client.get(f"/invoices/{issued.uid}/").status_code == 404
    assert client.get(f"/api/v1/invoices/{issued.number}").status_code == 404
    assert client.get("/api/v1/invoices").json()["count"] == 0


def test_it_gives_the_tax_officer_no_right_to_issue(client: Client, org_a, org_b, tax_officer):
    client.force_login(tax_officer)
    body = {
        "kind": "digital_ordinary",
        "buyer_kind": "person",
        "buyer_name": "个人",
        "seller_tax_id": org_a.tax_id,
        "lines": [
            {
                "tax_code": "3040201030000000000",
                "item_name": "维护",
                "tax_rate": "0.06",
                "amount": "10",
            }
        ],
    }
    response = client.post("/api/v1/invoices", body, content_type="application/json")
    assert response.status_code in {403, 404}
