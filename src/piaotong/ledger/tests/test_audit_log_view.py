"""Auditors read, filter and export the audit log of their own organisations only."""

from __future__ import annotations

import pytest
from django.test import Client

from piaotong.accounts.choices import Role
from piaotong.invoices.actions import do_issue_invoices
from piaotong.ledger.models import AuditEntry
from piaotong.testing import draft, make_user

pytestmark = pytest.mark.django_db


def test_it_shows_the_auditor_their_organisations_entries(
    client: Client, org_a, org_b, clerk_actor, auditor
):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 2)
    make_user("b-auditor", org_b, Role.AUDITOR)
    client.force_login(auditor)
    page = client.get("/audit/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("invoice.issued") == 2
    assert all(entry.organisation_id == org_a.pk for entry in page.context["page"])


def test_it_hides_other_organisations_entries(client: Client, org_a, org_b, clerk_actor):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)])
    client.force_login(make_user("b-auditor", org_b, Role.AUDITOR))
    page = client.get("/audit/")
    assert "invoice.issued" not in page.content.decode()


def test_it_refuses_a_clerk(client: Client, clerk):
    client.force_login(clerk)
    assert client.get("/audit/").status_code == 403


def test_it_filters_by_action(client: Client, org_a, org_b, clerk_actor, auditor):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)])
    client.force_login(auditor)
    rows = client.get("/audit/", {"action": "role."}).context["page"]
    assert {entry.action for entry in rows} == {"role.granted"}


def test_it_exports_a_formula_safe_csv(client: Client, org_a, org_b, clerk_actor, auditor):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)])
    AuditEntry.objects.filter(action="invoice.issued").update(actor_label="=cmd|' /C calc'!A0")
    client.force_login(auditor)
    response = client.get("/audit/", {"export": "csv"})
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeffseq,occurred_at")
    assert "'=cmd" in body and ",=cmd" not in body
    assert (
        AuditEntry.objects.filter(action="audit_log.exported", organisation_id=org_a.pk).count()
        == 1
    )
