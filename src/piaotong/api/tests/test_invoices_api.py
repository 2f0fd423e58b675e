"""The invoice API: issuing, idempotency, scoping, errors, listing."""

from __future__ import annotations

import json
import threading
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test import Client

from piaotong.accounts.actions import do_create_api_key
from piaotong.accounts.choices import ApiScope
from piaotong.invoices.models import Invoice
from piaotong.lib.taxid import compose_uscc
from piaotong.testing import OPERATOR, SOFTWARE_SERVICE, make_org

pytestmark = pytest.mark.django_db
BUYER_TAX_ID = compose_uscc("9", "1", "310115", "MA1TEXT2")


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "digital_special",
        "buyer_name": "上海测试贸易有限公司",
        "buyer_tax_id": BUYER_TAX_ID,
        "lines": [
            {
                "tax_code": SOFTWARE_SERVICE,
                "item_name": "软件维护费",
                "tax_rate": "6%",
                "quantity": "2",
                "unit_price": "500",
            },
            {
                "tax_code": "1090511030000000000",
                "item_name": "笔记本电脑",
                "tax_rate": "0.13",
                "amount": "4000.00",
            },
        ],
    } | overrides


def post(client: Client, path: str, data: Any, token: str | None, **headers: str):
    if token:
        headers["X-API-Key"] = token
    return client.post(path, orjson.dumps(data), content_type="application/json", headers=headers)


def get(client: Client, path: str, token: str, **params: Any):
    return client.get(path, params, headers={"Authorization": f"Bearer {token}"})


def test_it_issues_through_the_api(client, org_b, token_a):
    response = post(client, "/api/v1/invoices", body(), token_a)
    assert response.status_code == 201, response.content
    data = response.json()
    assert len(data["number"]) == 20 and data["status"] == "issued"
    assert (
        data["total_amount"] == "5000.00"
        and data["total_tax"] == "580.00"
        and data["total_with_tax"] == "5580.00"
    )
    assert [line["tax_rate"] for line in data["lines"]] == ["0.06", "0.13"]
    assert data["signature"]["key_id"]
    assert get(client, f"/api/v1/invoices/{data['number']}", token_a).json()["id"] == data["id"]


def test_it_replays_a_retry_with_the_same_idempotency_key(client, org_b, token_a):
    first = post(client, "/api/v1/invoices", body(), token_a, **{"Idempotency-Key": "erp-42"})
    retry = post(client, "/api/v1/invoices", body(), token_a, **{"Idempotency-Key": "erp-42"})
    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert Invoice.objects.count() == 1


def test_it_refuses_the_same_key_with_a_different_body(client, org_b, token_a):
    post(client, "/api/v1/invoices", body(), token_a, **{"Idempotency-Key": "erp-43"})
    conflict = post(
        client,
        "/api/v1/invoices",
        body(remarks="changed"),
        token_a,
        **{"Idempotency-Key": "erp-43"},
    )
    assert conflict.status_code == 409
    assert conflict.json()["detail"][0]["code"] == "idempotency_key_reused"
    assert Invoice.objects.count() == 1


def test_it_does_not_remember_a_refused_request(client, org_b, token_a):
    refused = post(
        client, "/api/v1/invoices", body(buyer_tax_id="bad"), token_a, **{"Idempotency-Key": "k1"}
    )
    assert refused.status_code == 422
    fixed = post(
        client, "/api/v1/invoices", body(buyer_tax_id="bad"), token_a, **{"Idempotency-Key": "k1"}
    )
    assert fixed.status_code == 422
    assert (
        post(client, "/api/v1/invoices", body(), token_a, **{"Idempotency-Key": "k2"}).status_code
        == 201
    )


def test_it_keeps_keys_apart_per_client(client, org_b, token_a):
    second = make_org("北京第二测试有限公司", "110105", "MA01XEC2")
    token_c = do_create_api_key(OPERATOR, second, "ERP-C", [ApiScope.INVOICES_WRITE])[1]
    first = post(client, "/api/v1/invoices", body(), token_a, **{"Idempotency-Key": "same"})
    other = post(client, "/api/v1/invoices", body(), token_c, **{"Idempotency-Key": "same"})
    assert first.status_code == 201
    assert other.status_code == 201
    assert Invoice.objects.count() == 2


def test_it_issues_twice_without_a_key(client, org_b, token_a):
    post(client, "/api/v1/invoices", body(), token_a)
    post(client, "/api/v1/invoices", body(), token_a)
    assert Invoice.objects.count() == 2


def test_it_answers_field_level_errors_in_both_languages(client, org_b, token_a):
    bad_line = {"tax_code": SOFTWARE_SERVICE, "item_name": "x", "tax_rate": "0.13", "amount": "100"}
    response = post(
        client,
        "/api/v1/invoices",
        body(buyer_tax_id="91310115MA1TEXT2XX", lines=[bad_line]),
        token_a,
    )
    assert response.status_code == 422
    detail = {d["field"]: d for d in response.json()["detail"]}
    assert {"buyer_tax_id", "lines.0.tax_rate"} <= set(detail)
    assert detail["lines.0.tax_rate"]["message_en"] != detail["lines.0.tax_rate"]["message_zh"]
    assert not Invoice.objects.exists()


def test_it_refuses_unknown_fields_and_malformed_json(client, org_b, token_a):
    assert post(client, "/api/v1/invoices", body(surprise=1), token_a).status_code == 422
    response = client.post(
        "/api/v1/invoices",
        b"{not json",
        content_type="application/json",
        headers={"X-API-Key": token_a},
    )
    assert response.status_code in {400, 422}
    assert not Invoice.objects.exists()


def test_it_refuses_an_oversized_request(client, org_b, token_a, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = post(client, "/api/v1/invoices", body(remarks="长" * 20_000), token_a)
    assert response.status_code in {400, 413}
    assert not Invoice.objects.exists()


def test_it_hides_other_organisations_invoices(client, org_b, token_a, token_b):
    number = post(client, "/api/v1/invoices", body(), token_a).json()["number"]
    assert (
        get(client, f"/api/v1/invoices/{number}", token_b).status_code == 200
    )  # org B is the buyer
    outsider_org = post(
        client,
        "/api/v1/invoices",
        body(buyer_kind="person", kind="digital_ordinary", buyer_tax_id="", buyer_name="个人"),
        token_a,
    ).json()
    assert get(client, f"/api/v1/invoices/{outsider_org['id']}", token_b).status_code == 404
    assert get(client, f"/api/v1/invoices/{outsider_org['number']}", token_b).status_code == 404
    listed = get(client, "/api/v1/invoices", token_b).json()
    assert [r["number"] for r in listed["results"]] == [number]


def test_it_refuses_writes_with_a_read_only_key(client, org_b, read_only_token):
    assert post(client, "/api/v1/invoices", body(), read_only_token).status_code == 403
    assert get(client, "/api/v1/invoices", read_only_token).status_code == 200


def test_it_requires_authentication(client, org_b):
    assert client.get("/api/v1/invoices").status_code == 401
    assert post(client, "/api/v1/invoices", body(), "pt_nope_nope").status_code == 401


def test_it_works_with_a_browser_session(client, org_b, clerk, token_a):
    post(client, "/api/v1/invoices", body(), token_a)
    client.force_login(clerk)
    assert client.get("/api/v1/invoices").json()["count"] == 1


def test_it_issues_bulk_all_or_nothing(client, org_b, token_a):
    bad = post(
        client,
        "/api/v1/invoices/bulk",
        {"invoices": [body(), body(buyer_tax_id="x"), body()]},
        token_a,
    )
    assert bad.status_code == 422
    assert [item["index"] for item in bad.json()["items"]] == [1]
    assert not Invoice.objects.exists()
    good = post(client, "/api/v1/invoices/bulk", {"invoices": [body()] * 10}, token_a)
    assert good.status_code == 201 and good.json()["count"] == 10
    too_many = post(client, "/api/v1/invoices/bulk", {"invoices": [body()] * 1001}, token_a)
    assert too_many.status_code == 422


def test_it_runs_the_draft_review_flow(client, org_a, org_b, clerk, reviewer):
    org_a.requires_dual_review = True
    org_a.save()
    csrf = Client()
    csrf.force_login(clerk)
    draft = post(csrf, "/api/v1/invoices/drafts", body(), None).json()
    assert draft["status"] == "draft" and draft["number"] is None
    assert post(csrf, f"/api/v1/invoices/{draft['id']}/issue", {}, None).status_code == 422
    assert (
        post(csrf, f"/api/v1/invoices/{draft['id']}/submit", {}, None).json()["status"]
        == "pending_review"
    )
    assert post(csrf, f"/api/v1/invoices/{draft['id']}/approve", {}, None).status_code == 403
    csrf.force_login(reviewer)
    approved = post(csrf, f"/api/v1/invoices/{draft['id']}/approve", {}, None).json()
    assert approved["status"] == "issued" and approved["reviewer"] == "reviewer"


def test_it_filters_and_paginates_the_list(client, org_b, token_a):
    post(
        client,
        "/api/v1/invoices/bulk",
        {"invoices": [body()] * 7 + [body(kind="digital_ordinary")]},
        token_a,
    )
    page = get(client, "/api/v1/invoices", token_a, page=2, page_size=3).json()
    assert page["count"] == 8 and len(page["results"]) == 3
    assert get(client, "/api/v1/invoices", token_a, kind="digital_ordinary").json()["count"] == 1
    assert get(client, "/api/v1/invoices", token_a, amount_min="6000").json()["count"] == 0
    assert get(client, "/api/v1/invoices", token_a, buyer="浦江").json()["count"] == 0


def test_it_lists_with_a_constant_number_of_queries(
    client, org_b, token_a, django_assert_max_num_queries
):
    post(client, "/api/v1/invoices/bulk", {"invoices": [body()] * 40}, token_a)
    with django_assert_max_num_queries(6):
        assert get(client, "/api/v1/invoices", token_a).json()["count"] == 40


@pytest.mark.django_db(transaction=True)
def test_it_issues_once_for_concurrent_retries(org_b, token_a):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    results: list[int] = []

    def retry() -> None:
        results.append(
            post(
                Client(), "/api/v1/invoices", body(), token_a, **{"Idempotency-Key": "race"}
            ).status_code
        )
        connection.close()

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [201] * 6
    assert Invoice.objects.count() == 1


def test_it_replaces_a_draft_with_put(client, org_b, token_a):
    draft = post(client, "/api/v1/invoices/drafts", body(), token_a).json()
    changed = body(remarks="第二版", lines=[body()["lines"][0]])
    response = client.put(
        f"/api/v1/invoices/{draft['id']}",
        orjson.dumps(changed),
        content_type="application/json",
        headers={"X-API-Key": token_a},
    )
    assert response.status_code == 200
    assert response.json()["remarks"] == "第二版" and len(response.json()["lines"]) == 1
    issued = post(client, f"/api/v1/invoices/{draft['id']}/issue", {}, token_a).json()
    again = client.put(
        f"/api/v1/invoices/{draft['id']}",
        orjson.dumps(changed),
        content_type="application/json",
        headers={"X-API-Key": token_a},
    )
    assert issued["status"] == "issued" and again.status_code == 422


def test_it_audits_the_first_use_of_a_key_each_day(client, org_b, token_a):
    from piaotong.ledger.models import AuditEntry

    for _ in range(3):
        get(client, "/api/v1/invoices", token_a)
    assert AuditEntry.objects.filter(action="api_key.used").count() == 1


def test_it_replays_a_retry_whose_json_was_reserialised(client, org_b, token_a):
    first = client.post(
        "/api/v1/invoices",
        orjson.dumps(body()),
        content_type="application/json",
        headers={"X-API-Key": token_a, "Idempotency-Key": "erp-44"},
    )
    pretty = json.dumps(dict(reversed(list(body().items()))), indent=2, ensure_ascii=False)
    retry = client.post(
        "/api/v1/invoices",
        pretty.encode(),
        content_type="application/json",
        headers={"X-API-Key": token_a, "Idempotency-Key": "erp-44"},
    )
    assert first.status_code == retry.status_code == 201
    assert retry.json()["number"] == first.json()["number"]
    assert Invoice.objects.count() == 1


def test_it_treats_sql_in_filters_as_text(client, org_b, token_a, token_b):
    post(client, "/api/v1/invoices", body(), token_a)
    for attack in ["' OR 1=1 --", "%' OR '1'='1", 'x"; DROP TABLE invoices_invoice; --']:
        response = get(client, "/api/v1/invoices", token_a, buyer=attack, number=attack[:20])
        assert response.status_code == 200
        assert response.json()["count"] == 0
    assert get(client, "/api/v1/invoices", token_a).json()["count"] == 1


def test_it_refuses_to_issue_for_another_organisation_named_in_the_body(
    client, org_a, org_b, token_b
):
    response = post(client, "/api/v1/invoices", body(seller_tax_id=org_a.tax_id), token_b)
    assert response.status_code == 404
    assert not Invoice.objects.exists()
