"""POST /api/v1/verify and /api/v1/verify/file: anonymous or authenticated, with the same
answers and limits as the page."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from piaotong.accounts.actions import do_create_api_key
from piaotong.accounts.choices import ApiScope
from piaotong.accounts.models import Organisation, User
from piaotong.documents.actions import render_bytes
from piaotong.invoices.models import Invoice
from piaotong.lib.qr import compose_digital_qr
from piaotong.testing import OPERATOR
from piaotong.verification.models import VerificationLog

pytestmark = pytest.mark.django_db
URL = "/api/v1/verify"


def body(invoice: Invoice, **changes: str) -> dict[str, str]:
    assert invoice.issue_date
    return {
        "number": invoice.number or "",
        "issue_date": invoice.issue_date.isoformat(),
        "total_with_tax": str(invoice.total_with_tax),
    } | changes


def post(client: Client, data: dict[str, Any], **headers: str) -> Any:
    return client.post(URL, data, content_type="application/json", headers=headers)


def test_it_verifies_anonymously(client: Client, invoice: Invoice) -> None:
    response = post(client, body(invoice))
    assert response.status_code == 200
    data = response.json()
    assert data["outcome"] == "match"
    assert data["invoice"]["status_mark"] == {"zh": "正常", "en": "Normal"}
    assert data["invoice"]["total_with_tax"] == "1060.00"
    assert data["message_zh"].startswith("一致")


def test_it_names_the_field_and_hides_the_value_from_anonymous_callers(
    client: Client, invoice: Invoice
) -> None:
    data = post(client, body(invoice, total_with_tax="1000")).json()
    assert data["outcome"] == "mismatch"
    assert [d["field"] for d in data["differing"]] == ["total_with_tax"]
    assert data["hints"][0]["code"] == "pre_tax_amount_typed"
    assert "stored" not in data and "invoice" not in data


def test_it_shows_the_stored_value_to_the_buyers_api_key(
    client: Client, invoice: Invoice, org_b: Organisation
) -> None:
    _, token = do_create_api_key(OPERATOR, org_b, "erp", [ApiScope.INVOICES_READ])
    data = post(client, body(invoice, total_with_tax="1000"), **{"X-API-Key": token}).json()
    assert data["stored"] == {"total_with_tax": "1060.00"}
    assert VerificationLog.objects.get().principal.startswith("apikey:")


def test_it_verifies_a_qr_text(client: Client, invoice: Invoice) -> None:
    assert invoice.number and invoice.issue_date
    text = compose_digital_qr("32", invoice.number, invoice.issue_date, invoice.total_with_tax)
    data = post(client, {"qr": text}).json()
    assert data["outcome"] == "match" and data["input_kind"] == "qr_text"


def test_it_answers_not_found(client: Client, invoice: Invoice) -> None:
    data = post(client, body(invoice, number="26112000000000099999")).json()
    assert data["outcome"] == "not_found"


def test_it_explains_bad_input_in_both_languages(client: Client) -> None:
    response = post(client, {"number": "12", "issue_date": "2026-02-30", "total_with_tax": "1.001"})
    assert response.status_code == 422
    fields = {d["field"]: d for d in response.json()["detail"]}
    assert set(fields) == {"number", "issue_date", "total_with_tax"}
    assert fields["total_with_tax"]["message_zh"] and fields["total_with_tax"]["message_en"]


def test_it_refuses_unknown_fields(client: Client) -> None:
    assert post(client, {"numbr": "1"}).status_code == 422


def test_it_answers_429_with_retry_after_past_the_daily_limit(
    client: Client, invoice: Invoice, settings: Any
) -> None:
    settings.PIAOTONG_VERIFY_DAILY_LIMIT = 2
    statuses = [post(client, body(invoice)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = post(client, body(invoice))
    assert refused.json()["outcome"] == "daily_limit"
    assert int(refused["Retry-After"]) > 0


def test_it_throttles_an_anonymous_guesser(client: Client, settings: Any) -> None:
    settings.PIAOTONG_VERIFY_MISS_LIMIT_ANON = 2
    guesses = [f"261120000000000{n:05d}" for n in range(10, 13)]
    statuses = [
        post(client, {"number": g, "issue_date": "2026-01-05", "total_with_tax": "1"}).status_code
        for g in guesses
    ]
    assert statuses == [200, 200, 429]


def test_a_logged_in_browser_needs_its_csrf_token(clerk: User, invoice: Invoice) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(clerk)
    assert post(browser, body(invoice)).status_code == 403
    browser.get("/verify/")
    token = browser.cookies["csrftoken"].value
    response = post(browser, body(invoice), **{"X-CSRFToken": token})
    assert response.status_code == 200
    assert VerificationLog.objects.get().principal == f"user:{clerk.pk}"


def test_it_verifies_an_uploaded_file(client: Client, invoice: Invoice, media_root: Any) -> None:
    upload = SimpleUploadedFile("invoice.xml", render_bytes(invoice, "xml"))
    data = client.post(f"{URL}/file", {"file": upload}).json()
    assert data["outcome"] == "match" and data["signature"] == "valid"


def test_it_names_the_tampered_field_of_an_uploaded_file(
    client: Client, invoice: Invoice, media_root: Any
) -> None:
    xml = render_bytes(invoice, "xml")
    forged = xml.replace(b"<TotalTaxAm>60.00<", b"<TotalTaxAm>66.00<")
    assert forged != xml
    data = client.post(f"{URL}/file", {"file": SimpleUploadedFile("i.xml", forged)}).json()
    assert data["outcome"] == "mismatch"
    assert "total_tax" in [d["field"] for d in data["differing"]]


def test_it_refuses_an_unreadable_upload(client: Client) -> None:
    response = client.post(f"{URL}/file", {"file": SimpleUploadedFile("x.pdf", b"%PDF-1.7 junk")})
    assert response.status_code == 422
    assert response.json()["detail"][0]["code"] == "pdf_unreadable"
