"""The deduction API (session-authenticated here: API keys have no purchase scopes yet)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from piaotong.deduction.models import Booking, DeductionSelection
from piaotong.deduction.periods import period_of
from piaotong.invoices.choices import InvoiceKind
from piaotong.ledger.models import LedgerEvent

pytestmark = pytest.mark.django_db
BASE = "/api/v1/deduction"


def this_period() -> str:
    return period_of(date.today())


def post(client: Any, path: str, body: Any = None, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(path, body or {}, content_type="application/json", headers=headers)


def test_it_lists_received_invoices_with_their_state(client, issue, buyer_finance):
    invoice = issue()
    client.force_login(buyer_finance)
    post(client, f"{BASE}/received/{invoice.number}/book")
    body = client.get(f"{BASE}/received", {"booked": "yes"}).json()
    assert body["count"] == 1
    [row] = body["results"]
    assert row["number"] == invoice.number and row["booked_at"] and row["selection"] is None


def test_select_is_idempotent_and_all_or_nothing(client, issue, buyer_finance):
    good, ordinary = issue(), issue(kind=InvoiceKind.DIGITAL_ORDINARY)
    client.force_login(buyer_finance)
    path = f"{BASE}/periods/{this_period()}/select"
    refused = post(
        client, path, {"items": [{"invoice": good.number}, {"invoice": ordinary.number}]}
    )
    assert refused.status_code == 422
    [item] = refused.json()["items"]
    assert item["index"] == 1 and item["errors"][0]["code"] == "not_deductible_kind"
    assert not DeductionSelection.objects.exists()
    body = {"items": [{"invoice": good.number, "effective_tax": "30.00"}]}
    first = post(client, path, body, key="sel-1")
    again = post(client, path, body, key="sel-1")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert DeductionSelection.objects.count() == 1
    assert LedgerEvent.objects.filter(kind="DeductionSelected").count() == 1
    assert first.json()["selections"][0]["effective_tax"] == "30.00"


def test_the_pipeline_through_the_api(client, issue, buyer_finance):
    invoice = issue()
    client.force_login(buyer_finance)
    period = this_period()
    post(client, f"{BASE}/periods/{period}/select", {"items": [{"invoice": str(invoice.uid)}]})
    stats = post(client, f"{BASE}/periods/{period}/statistics").json()
    assert stats["status"] == "counted" and stats["statistics"]["totals"]["deduct"]["invoices"] == 1
    assert post(client, f"{BASE}/received/{invoice.number}/revoke").status_code == 422
    assert post(client, f"{BASE}/periods/{period}/statistics/revoke").json()["status"] == "open"
    post(client, f"{BASE}/periods/{period}/statistics")
    assert post(client, f"{BASE}/periods/{period}/confirm").json()["status"] == "confirmed"
    assert client.get(f"{BASE}/periods/{period}").json()["status"] == "confirmed"


def test_unknown_and_foreign_invoices(client, issue, buyer_finance, outsider):
    invoice = issue()
    client.force_login(outsider)
    assert post(client, f"{BASE}/received/{invoice.number}/book").status_code == 404
    assert client.get(f"{BASE}/received/{invoice.number}").status_code == 404
    client.force_login(buyer_finance)
    refused = post(
        client, f"{BASE}/periods/{this_period()}/select", {"items": [{"invoice": "12345"}]}
    )
    assert (
        refused.status_code == 422
        and refused.json()["items"][0]["errors"][0]["code"] == "not_found"
    )
    assert not Booking.objects.exists()
