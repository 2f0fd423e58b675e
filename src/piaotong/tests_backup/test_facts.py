"""What a snapshot is checked by: row counts, the audit chain head, and what makes a node empty."""

from __future__ import annotations

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.backup.facts import DatabaseFacts, compare_facts, live_facts, node_holdings
from piaotong.invoices.actions import do_issue_invoices
from piaotong.invoices.models import Invoice
from piaotong.ledger.models import AuditEntry, LedgerEvent
from piaotong.testing import draft, make_org


def test_it_counts_rows_and_reads_the_audit_chain_head(
    org_a: Organisation, org_b: Organisation, clerk_actor: Actor
) -> None:
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)] * 3)
    facts = live_facts()
    last = AuditEntry.objects.order_by("seq").last()
    assert last is not None
    assert facts.count(Invoice) == facts.count(LedgerEvent) == 3
    assert facts.row_counts[AuditEntry._meta.db_table] == AuditEntry.objects.count()
    assert facts.chain_heads["audit"] == {"seq": last.seq, "hash": last.hash}
    assert {"accounts", "invoices", "ledger", "contenttypes"} <= facts.migrations.keys()
    assert "django_session" not in facts.row_counts


def test_it_names_each_difference_from_the_manifest(
    org_a: Organisation, org_b: Organisation, clerk_actor: Actor
) -> None:
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)])
    archived = live_facts()
    do_issue_invoices(clerk_actor, org_a, [draft(org_b)])
    problems = compare_facts(archived, live_facts())
    assert "rows in invoices_invoice: archive 1, restored 2" in problems
    assert any(p.startswith("chain head audit: archive") for p in problems)
    assert compare_facts(archived, DatabaseFacts(**vars(archived))) == []


def test_it_counts_a_node_with_only_an_organisation_as_holding_data(db: None) -> None:
    assert node_holdings() == {"invoices": 0, "organisations": 0, "ledger events": 0}
    make_org("北京测试科技有限公司", "110108", "MA01TEXT")
    assert node_holdings()["organisations"] == 1
