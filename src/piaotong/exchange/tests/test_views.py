"""The sync dashboard, its navigation link and the metrics."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from piaotong.accounts.choices import Role
from piaotong.exchange.inbox import receive
from piaotong.testing import make_user


@pytest.fixture
def org_admin(org_a: Any) -> Any:
    return make_user("orgadmin", org_a, Role.ORG_ADMIN)


def test_it_shows_the_dashboard_to_a_tax_officer_with_the_quarantine(
    client: Any, tax_officer: Any
) -> None:
    receive(b"not json", "piaotong.v1.11.31.InvoiceIssued")
    client.force_login(tax_officer)
    page = client.get(reverse("exchange:dashboard"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "无法读取的报文" in text and 'href="/sync/"' in text


def test_it_refuses_the_dashboard_to_a_clerk_and_hides_the_link(client: Any, clerk: Any) -> None:
    client.force_login(clerk)
    assert client.get(reverse("exchange:dashboard")).status_code == 403
    assert 'href="/sync/"' not in client.get(reverse("invoices:dashboard")).content.decode()


def test_it_links_the_dashboard_for_an_org_admin(client: Any, org_admin: Any) -> None:
    client.force_login(org_admin)
    assert 'href="/sync/"' in client.get(reverse("invoices:dashboard")).content.decode()


def test_it_exports_prometheus_metrics(client: Any, db: Any) -> None:
    receive(b"not json", "piaotong.v1.11.31.InvoiceIssued")
    body = client.get(reverse("exchange:metrics")).content.decode()
    assert "piaotong_quarantined_events 1.0" in body
    assert "piaotong_outbox_unpublished 0.0" in body
