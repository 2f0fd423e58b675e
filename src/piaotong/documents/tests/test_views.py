"""Downloads through the UI and the API, as the parties' personas and as an outsider."""

from __future__ import annotations

import hashlib

import pytest
from django.template.loader import render_to_string

from piaotong.accounts.actions import do_create_api_key
from piaotong.accounts.choices import ApiScope, Role
from piaotong.documents.models import Document
from piaotong.testing import OPERATOR, make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("fmt", "magic"), [("pdf", b"%PDF-"), ("xml", b"<?xml"), ("ofd", b"PK")])
def test_a_clerk_downloads_every_format(client, clerk, issued, fmt, magic):
    client.force_login(clerk)
    response = client.get(f"/documents/{issued.number}/{fmt}")
    assert response.status_code == 200
    assert response.content.startswith(magic)
    assert f'filename="{issued.number}.{fmt}"' in response["Content-Disposition"]
    assert response["X-Content-SHA256"] == hashlib.sha256(response.content).hexdigest()
    assert Document.objects.get(invoice=issued, format=fmt).sha256 == response["X-Content-SHA256"]


def test_the_buyer_downloads_too(client, issued, org_b):
    buyer_clerk = make_user("buyer-clerk", org_b, Role.CLERK)
    client.force_login(buyer_clerk)
    assert client.get(f"/documents/{issued.number}/pdf").status_code == 200


def test_an_outsider_gets_404(client, issued, org_b, small_org):
    stranger = make_user("stranger", small_org, Role.CLERK)
    client.force_login(stranger)
    assert client.get(f"/documents/{issued.number}/pdf").status_code == 404
    assert client.get(f"/documents/{issued.number}/print").status_code == 404
    assert not Document.objects.exists()


def test_an_anonymous_visitor_is_sent_to_login(client, issued):
    response = client.get(f"/documents/{issued.number}/pdf")
    assert response.status_code == 302 and "login" in response["Location"]


def test_unknown_formats_are_404(client, clerk, issued):
    client.force_login(clerk)
    assert client.get(f"/documents/{issued.number}/docx").status_code == 404


def test_the_print_view_shows_the_invoice(client, clerk, issued):
    client.force_login(clerk)
    response = client.get(f"/documents/{issued.number}/print")
    text = response.content.decode()
    assert response.status_code == 200
    assert "电子发票（增值税专用发票）" in text and issued.number in text
    assert "壹万捌仟零玖圆玖角柒分" in text and "¥18009.97" in text


def test_the_links_snippet_points_at_the_downloads(issued):
    html = render_to_string("documents/_links.html", {"invoice": issued})
    for fmt in ("pdf", "ofd", "xml", "print"):
        assert f"/documents/{issued.number}/{fmt}" in html


def token_for(organisation) -> str:
    _key, token = do_create_api_key(OPERATOR, organisation, "ERP", [ApiScope.INVOICES_READ])
    return token


def test_the_api_serves_documents_to_parties(client, issued, org_a):
    headers = {"Authorization": f"Bearer {token_for(org_a)}"}
    response = client.get(f"/api/v1/documents/{issued.number}/xml", headers=headers)
    assert response.status_code == 200 and response.content.startswith(b"<?xml")
    assert response["Content-Type"] == "application/xml"


def test_the_api_answers_404_to_other_organisations(client, issued, small_org):
    headers = {"Authorization": f"Bearer {token_for(small_org)}"}
    assert client.get(f"/api/v1/documents/{issued.number}/pdf", headers=headers).status_code == 404
    assert (
        client.get("/api/v1/documents/26112000000000099999/pdf", headers=headers).status_code == 404
    )


def test_the_api_needs_a_key(client, issued):
    assert client.get(f"/api/v1/documents/{issued.number}/pdf").status_code in {401, 403}
