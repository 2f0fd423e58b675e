"""The red-letter and void API: filing, answering, listing, voiding; idempotency and scoping.

Browser sessions (a logged-in finance manager) and API keys both authenticate; API-key scopes
grant no red-letter or void right, so an ERP key is refused (403).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.test import Client

from piaotong.accounts.actions import do_create_api_key
from piaotong.accounts.choices import ApiScope
from piaotong.invoices.choices import InvoiceStatus, RedLetterStatus
from piaotong.invoices.models import Invoice, RedLetterConfirmation
from piaotong.invoices.tests.conftest import paper
from piaotong.testing import OPERATOR

pytestmark = pytest.mark.django_db

FULL_ERROR = {"side": "buyer", "reason": "01"}
PARTIAL_RETURN = {
    "side": "seller",
    "reason": "02",
    "full": False,
    "lines": [{"position": 1, "amount": "100.00"}],
}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(client: Client, path: str, data: Any = None, **headers: str):
    body = orjson.dumps(data) if data is not None else b""
    return client.post(path, body, content_type="application/json", headers=headers)


def test_it_files_and_confirms_through_the_api(blue, finance_a, finance_c):
    filed = post(client_for(finance_c), f"/api/v1/invoices/{blue.number}/red-letter", FULL_ERROR)
    assert filed.status_code == 201, filed.content
    data = filed.json()
    assert data["status"] == "pending" and data["platform_code"] == "03"
    assert data["total_with_tax"] == "-18009.97" and data["blue_number"] == blue.number
    seller = client_for(finance_a)
    listed = seller.get("/api/v1/invoices/red-letter/requests", {"status": "pending"}).json()
    assert [row["id"] for row in listed["results"]] == [data["id"]]
    confirmed = post(seller, f"/api/v1/invoices/red-letter/requests/{data['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.content
    assert confirmed.json()["status"] == "issued" and len(confirmed.json()["red_number"]) == 20
    red = client_for(finance_c).get(f"/api/v1/invoices/{confirmed.json()['red_number']}").json()
    assert red["total_with_tax"] == "-18009.97"
    blue.refresh_from_db()
    assert blue.status == InvoiceStatus.FULLY_RED_FLUSHED


def test_it_replays_a_retried_request_with_the_same_idempotency_key(blue, finance_a):
    client = client_for(finance_a)
    path = f"/api/v1/invoices/{blue.number}/red-letter"
    first = post(client, path, PARTIAL_RETURN, **{"Idempotency-Key": "rl-1"})
    retry = post(client, path, PARTIAL_RETURN, **{"Idempotency-Key": "rl-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and retry.headers["Idempotent-Replayed"] == "true"
    assert RedLetterConfirmation.objects.count() == 1
    other = post(client, path, PARTIAL_RETURN | {"reason": "04"}, **{"Idempotency-Key": "rl-1"})
    assert other.status_code == 409


def test_it_refuses_over_reversal_with_a_field_error(blue, finance_a):
    body = PARTIAL_RETURN | {"lines": [{"position": 1, "amount": "1000.01"}]}
    response = post(client_for(finance_a), f"/api/v1/invoices/{blue.number}/red-letter", body)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert (detail["field"], detail["code"]) == ("lines.0.amount", "over_flush")
    assert detail["message_zh"] and detail["message_en"]


def test_it_refuses_and_withdraws_through_the_api(blue, finance_a, finance_c):
    seller, buyer = client_for(finance_a), client_for(finance_c)
    path = f"/api/v1/invoices/{blue.number}/red-letter"
    first = post(seller, path, PARTIAL_RETURN).json()
    refused = post(
        buyer, f"/api/v1/invoices/red-letter/requests/{first['id']}/refuse", {"reason": "没有退货"}
    )
    assert refused.json()["status"] == "refused" and refused.json()["refusal_reason"] == "没有退货"
    second = post(seller, path, PARTIAL_RETURN).json()
    # The buyer may not withdraw the seller's request: 403, not a state change.
    denied = post(buyer, f"/api/v1/invoices/red-letter/requests/{second['id']}/withdraw")
    assert denied.status_code == 403
    withdrawn = post(seller, f"/api/v1/invoices/red-letter/requests/{second['id']}/withdraw")
    assert withdrawn.json()["status"] == RedLetterStatus.WITHDRAWN


def test_it_hides_other_organisations_requests_and_invoices(blue, finance_a, outsider):
    confirmation = post(
        client_for(finance_a), f"/api/v1/invoices/{blue.number}/red-letter", PARTIAL_RETURN
    ).json()
    stranger = client_for(outsider)
    assert (
        stranger.get(f"/api/v1/invoices/red-letter/requests/{confirmation['id']}").status_code
        == 404
    )
    assert (
        post(
            stranger, f"/api/v1/invoices/red-letter/requests/{confirmation['id']}/confirm"
        ).status_code
        == 404
    )
    assert (
        post(stranger, f"/api/v1/invoices/{blue.number}/red-letter", FULL_ERROR).status_code == 404
    )
    assert (
        post(stranger, f"/api/v1/invoices/{blue.number}/void", {"reason": "x"}).status_code == 404
    )
    assert stranger.get("/api/v1/invoices/red-letter/requests").json()["count"] == 0


def test_it_denies_clerks_and_erp_keys(blue, clerk, org_a):
    path = f"/api/v1/invoices/{blue.number}/red-letter"
    assert post(client_for(clerk), path, PARTIAL_RETURN).status_code == 403
    token = do_create_api_key(OPERATOR, org_a, "ERP", [ApiScope.INVOICES_WRITE])[1]
    assert post(Client(), path, PARTIAL_RETURN, **{"X-API-Key": token}).status_code == 403
    assert not RedLetterConfirmation.objects.exists()


def test_it_voids_a_paper_invoice_through_the_api(org_a, seller, finance_a, clerk):
    invoice = paper(org_a, seller)
    path = f"/api/v1/invoices/{invoice.number}/void"
    assert post(client_for(clerk), path, {"reason": "填错"}).status_code == 403
    first = post(client_for(finance_a), path, {"reason": "填错"}, **{"Idempotency-Key": "v-1"})
    retry = post(client_for(finance_a), path, {"reason": "填错"}, **{"Idempotency-Key": "v-1"})
    assert first.status_code == retry.status_code == 200
    assert first.json()["status"] == "voided" and retry.json() == first.json()
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.VOIDED


def test_it_refuses_to_void_a_digital_invoice_through_the_api(blue, finance_a):
    response = post(client_for(finance_a), f"/api/v1/invoices/{blue.number}/void", {"reason": "x"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["code"] == "digital_not_voidable"
