"""`piaotong fieldkeys` and the data migrations that encrypt values written before encryption."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import translation

from piaotong.accounts.models import Organisation, TotpDevice
from piaotong.fields import field_keyring
from piaotong.invoices.actions import do_issue_invoices
from piaotong.invoices.models import Invoice
from piaotong.lib.fieldcrypto import Keyring, generate_key_line
from piaotong.testing import make_org
from piaotong.tests_fieldcrypto.test_issuing import person_draft

pytestmark = pytest.mark.django_db
OLD = generate_key_line("old")
NEW = generate_key_line("new")


def stored(table: str, column: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE {column} <> '' ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def rotate() -> str:
    out = StringIO()
    with translation.override("en"):
        call_command("fieldkeys", "rotate", "--batch", "2", stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def _old_key_is_current():
    """Every row of a test, fixtures' rows included, is first written under the key "old"."""
    with override_settings(PIAOTONG_FIELD_KEYS=OLD):
        yield


@pytest.fixture
def data_under_old_key(clerk_actor, org_a, reviewer):
    org_a.bank_account = "6222020012345678901"
    org_a.save()
    device = TotpDevice.objects.get(user=reviewer)
    device.secret = "JBSWY3DPEHPK3PXP"
    device.save()
    make_org("北京第二测试有限公司", "110108", "MA01TW0X", bank_account="6222020099999999999")
    do_issue_invoices(clerk_actor, org_a, [person_draft(n) for n in range(5)])


def test_it_rotates_to_a_new_key_so_the_old_one_can_be_dropped(data_under_old_key, org_a, reviewer):
    with override_settings(PIAOTONG_FIELD_KEYS=f"{NEW},{OLD}"):
        output = rotate()
        assert "accounts.Organisation: 2 values re-encrypted" in output
        assert "accounts.TotpDevice: 1 values re-encrypted" in output
        assert "invoices.Invoice: 10 values re-encrypted" in output
        assert "rows read" in output
        assert "0 values re-encrypted" in rotate().split("Done")[0].split("Re-encrypting")[1]
    for table, column in [
        ("accounts_organisation", "bank_account"),
        ("accounts_totpdevice", "secret"),
        ("invoices_invoice", "buyer_phone"),
        ("invoices_invoice", "buyer_email"),
    ]:
        assert all(value.startswith("pt1:new:") for value in stored(table, column))
    with override_settings(PIAOTONG_FIELD_KEYS=NEW):
        assert Organisation.objects.get(pk=org_a.pk).bank_account == "6222020012345678901"
        assert TotpDevice.objects.get(user=reviewer).secret == "JBSWY3DPEHPK3PXP"
        phones = sorted(Invoice.objects.values_list("buyer_phone", flat=True))
        assert phones == [f"1380000000{n}" for n in range(5)]


def test_it_changes_nothing_when_everything_is_under_the_current_key(data_under_old_key):
    before = stored("invoices_invoice", "buyer_email")
    output = rotate()
    assert "invoices.Invoice: 0 values re-encrypted" in output
    assert stored("invoices_invoice", "buyer_email") == before


def test_it_stops_with_the_missing_key_id_when_an_old_key_was_dropped_too_early(
    data_under_old_key,
):
    with override_settings(PIAOTONG_FIELD_KEYS=NEW), pytest.raises(Exception, match="'old'"):
        rotate()


def test_it_prints_a_new_key_line():
    out, err = StringIO(), StringIO()
    with translation.override("en"):
        call_command("fieldkeys", "generate", "--key-id", "k2", stdout=out, stderr=err)
    assert Keyring.parse(out.getvalue()).current_id == "k2"
    assert "fieldkeys rotate" in err.getvalue()


@pytest.mark.parametrize(
    ("module", "table", "column"),
    [
        (
            "piaotong.accounts.migrations.0004_encrypt_existing_values",
            "accounts_organisation",
            "bank_account",
        ),
        (
            "piaotong.invoices.migrations.0003_encrypt_existing_values",
            "invoices_invoice",
            "buyer_phone",
        ),
    ],
)
def test_it_encrypts_plaintext_left_from_before_and_is_idempotent(
    module, table, column, clerk_actor, org_a
):
    make_org("北京明文测试有限公司", "110108", "MA01PLNX", bank_account="6222000011112222")
    do_issue_invoices(clerk_actor, org_a, [person_draft(7)])
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {column} <> ''", ["plain-1"])
    forwards = importlib.import_module(module).Migration.operations[0].code
    forwards(None, connection.schema_editor())
    first = stored(table, column)
    assert first and all(value.startswith("pt1:") for value in first)
    forwards(None, connection.schema_editor())
    assert stored(table, column) == first
    context = f"{table.replace('_', '.', 1)}.{column}"
    assert {field_keyring().decrypt(value, context) for value in first} == {"plain-1"}
