"""`piaotong ledger verify` finds the first altered row of each chain."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from piaotong.invoices.actions import do_issue_invoices
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.ledger.verify import verify_ledger
from piaotong.testing import draft

pytestmark = pytest.mark.django_db


def test_it_passes_an_untouched_ledger(org_a, org_b, clerk_actor, capsys):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 5)
    call_command("ledger", "verify")
    assert "OK: 5 ledger events" in capsys.readouterr().out


def test_it_names_the_altered_audit_entry(org_a, org_b, clerk_actor):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 3)
    victim = AuditEntry.objects.order_by("seq")[4]
    AuditEntry.objects.filter(pk=victim.pk).update(actor_label="someone else")
    findings = list(verify_ledger())
    assert [(f.chain, f.breach.record_id) for f in findings] == [("audit", victim.pk)]
    with pytest.raises(CommandError):
        call_command("ledger", "verify")


def test_it_names_a_deleted_link(org_a, org_b, clerk_actor):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 3)
    AuditEntry.objects.order_by("seq")[2].delete()
    (finding,) = verify_ledger()
    assert finding.breach.reason == "prev_hash does not link to the previous record"


def test_it_names_an_altered_invoice_event(org_a, org_b, clerk_actor):
    invoice = do_issue_invoices(clerk_actor, org_a, [draft(org_b)])[0]
    event = LedgerEvent.objects.get(stream=invoice.stream)
    payload = event.payload
    payload["invoice"]["total_with_tax"] = "1.00"
    LedgerEvent.objects.filter(pk=event.pk).update(payload=payload)
    (finding,) = verify_ledger()
    assert finding.chain.startswith(invoice.stream) and finding.breach.record_id == event.pk


def test_it_verifies_the_audit_chain_alone(org_a, org_b, clerk_actor, capsys):
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 2)
    call_command("audit", "verify")
    assert "audit entries verified" in capsys.readouterr().out
    victim = AuditEntry.objects.order_by("seq")[3]
    AuditEntry.objects.filter(pk=victim.pk).update(details={"forged": True})
    with pytest.raises(CommandError, match=f"seq {victim.seq}"):
        call_command("audit", "verify")
