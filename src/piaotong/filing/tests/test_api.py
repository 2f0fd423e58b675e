"""The filing API: compute, prepare, submit, amend, versions in three formats, drill-down."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from piaotong.accounts.choices import Role
from piaotong.filing.models import VatReturn
from piaotong.filing.tests.conftest import backdate, last_month
from piaotong.testing import make_user

pytestmark = pytest.mark.django_db
BASE = "/api/v1/filing"


def post(client: Any, path: str, body: Any = None, key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(path, body or {}, content_type="application/json", headers=headers)


def test_compute_prepare_submit_amend_and_read(client, issue, org_a):
    client.force_login(make_user("seller.manager", org_a, Role.FINANCE_MANAGER))
    period = last_month()
    backdate(issue(), issue())
    computed = client.get(f"{BASE}/{period}").json()
    assert computed["computed"]["lines"]["output_tax"] == "120.00"
    assert post(client, f"{BASE}/{period}/prepare", key="p1").json()["status"] == "draft"
    submitted = post(client, f"{BASE}/{period}/submit", key="s1")
    assert submitted.json()["status"] == "submitted" and submitted.json()["content_hash"]
    replay = post(client, f"{BASE}/{period}/submit", key="s1")
    assert replay.headers.get("Idempotent-Replayed") == "true"
    refused = post(client, f"{BASE}/{period}/amend", {"reason": ""})
    assert refused.status_code == 422
    assert post(client, f"{BASE}/{period}/amend", {"reason": "fix"}).json()["version"] == 2
    assert VatReturn.objects.count() == 2
    xml = client.get(f"{BASE}/{period}/versions/1", {"format": "xml"})
    assert etree.fromstring(xml.content).get("version") == "1"
    drill = client.get(f"{BASE}/{period}/invoices", {"part": "output", "page_size": 1}).json()
    assert drill["count"] == 2 and len(drill["results"]) == 1
    assert client.get(f"{BASE}/2025Q1").status_code == 422  # quarters: small-scale only


def test_other_organisations_get_404(client, org_a, outsider):
    client.force_login(outsider)
    assert client.get(f"{BASE}/{last_month()}", {"organisation": org_a.tax_id}).status_code == 404
