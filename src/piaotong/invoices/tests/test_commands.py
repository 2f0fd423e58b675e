"""The CLI faces of issuing: `piaotong issue`, `piaotong invoices list`, `piaotong demo`, `apikey`."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from piaotong.accounts.models import ApiKey, Organisation, User
from piaotong.api.auth import actor_for_token
from piaotong.invoices.models import Invoice
from piaotong.testing import SOFTWARE_SERVICE

pytestmark = pytest.mark.django_db


def invoice_json(buyer: Organisation, **overrides: object) -> dict[str, object]:
    return {
        "kind": "digital_special",
        "buyer_name": buyer.name,
        "buyer_tax_id": buyer.tax_id,
        "lines": [
            {"tax_code": SOFTWARE_SERVICE, "item_name": "维护", "tax_rate": "6%", "amount": "100"}
        ],
    } | overrides


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_issues_one_invoice_from_a_json_file(tmp_path, org_a, org_b, clerk):
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(invoice_json(org_b)), encoding="utf-8")
    out = run("issue", "--from-json", str(path), "--seller", org_a.tax_id, "--user", "clerk")
    invoice = Invoice.objects.get()
    assert invoice.number is not None and invoice.number in out
    assert invoice.total_with_tax == 106
    assert invoice.issuer_name == "clerk"


def test_it_issues_a_bulk_file_all_or_nothing(tmp_path, org_a, org_b):
    path = tmp_path / "bulk.json"
    bad = invoice_json(org_b, buyer_tax_id="91310115MA1TEXT220")
    path.write_text(
        json.dumps({"seller_tax_id": org_a.tax_id, "invoices": [invoice_json(org_b), bad]})
    )
    with pytest.raises(CommandError, match=r"invoice 1: buyer_tax_id"):
        run("issue", "--from-json", str(path))
    assert not Invoice.objects.exists()
    path.write_text(
        json.dumps({"seller_tax_id": org_a.tax_id, "invoices": [invoice_json(org_b)] * 3})
    )
    assert "Issued 3 invoice(s)" in run("issue", "--from-json", str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"kind": "digital_special"}', "does not match")],
)
def test_it_explains_a_bad_file(tmp_path, org_a, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        run("issue", "--from-json", str(path), "--seller", org_a.tax_id)


def test_it_lists_invoices_as_json_lines(tmp_path, org_a, org_b):
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(invoice_json(org_b)))
    run("issue", "--from-json", str(path), "--seller", org_a.tax_id)
    rows = [json.loads(line) for line in run("invoices", "list", "--json").splitlines()]
    assert [r["buyer"]["tax_id"] for r in rows] == [org_b.tax_id]
    assert run("invoices", "list", "--status", "draft") == ""


def test_it_loads_demo_data_idempotently():
    first = run("demo", "--invoices-per-org", "3")
    assert "Demo ready" in first
    counts = (Organisation.objects.count(), User.objects.count(), Invoice.objects.count())
    run("demo", "--invoices-per-org", "3")
    assert (Organisation.objects.count(), User.objects.count(), Invoice.objects.count()) == counts
    assert counts[0] == 7  # five taxpayers, the Beijing tax bureau and the platform operator
    assert counts[2] == 9  # the three Beijing sellers; Shanghai and Guangzhou are buyers here
    bureau = Organisation.objects.get(kind="tax_bureau")
    assert bureau.region == "11"
    assert list(bureau.memberships.values_list("user__username", "role")) == [
        ("officer", "tax_officer")
    ]
    assert Invoice.objects.filter(reviewer_name__gt="").count() == 3  # the dual-review organisation


def test_it_creates_and_revokes_api_keys(org_a):
    out = run(
        "apikey", "create", "--org", org_a.tax_id, "--name", "ERP", "--scopes", "invoices:read"
    )
    token = out.strip().splitlines()[-1]
    assert actor_for_token(token) is not None
    prefix = ApiKey.objects.get().prefix
    assert prefix in run("apikey", "list")
    run("apikey", "revoke", prefix)
    assert actor_for_token(token) is None
    with pytest.raises(CommandError, match="Unknown scopes"):
        run("apikey", "create", "--org", org_a.tax_id, "--name", "x", "--scopes", "root")


def test_it_exports_invoices_to_excel_and_audits_it(tmp_path, org_a, org_b):
    from openpyxl import load_workbook

    from piaotong.ledger.models import AuditEntry

    path = tmp_path / "invoices.json"
    invoices = {"seller_tax_id": org_a.tax_id, "invoices": [invoice_json(org_b)] * 2}
    path.write_text(json.dumps(invoices), encoding="utf-8")
    run("issue", "--from-json", str(path))
    output = tmp_path / "out.xlsx"
    out = run("invoices", "export", "--output", str(output), "--seller", org_a.tax_id)
    assert "2 invoices exported" in out
    sheet = load_workbook(output, read_only=True)["发票"]
    assert len(list(sheet.iter_rows(min_row=2))) == 2
    entry = AuditEntry.objects.get(action="invoice.exported")
    assert entry.organisation_id == org_a.pk
    assert entry.details["rows"] == 2
