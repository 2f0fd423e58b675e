"""Encrypted columns through the ORM and in the raw table: what a copy of the database shows."""

from __future__ import annotations

import pytest
from django.core.exceptions import FieldError, ValidationError
from django.db import connection
from django.test import override_settings

from piaotong.accounts.actions import do_register_organisation
from piaotong.accounts.models import Organisation, TotpDevice
from piaotong.fields import field_keyring
from piaotong.invoices.choices import BuyerKind, InvoiceKind
from piaotong.invoices.models import Invoice
from piaotong.lib.fieldcrypto import TamperedTokenError, UnknownKeyError, generate_key_line
from piaotong.lib.taxid import compose_uscc
from piaotong.testing import OPERATOR, draft, make_org

pytestmark = pytest.mark.django_db
BANK_ACCOUNT = "6222020012345678901"


def raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def set_raw(table: str, column: str, pk: int, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, pk])


@pytest.fixture
def banked_org() -> Organisation:
    return make_org("北京加密测试有限公司", "110108", "MA01CRPT", bank_account=BANK_ACCOUNT)


def test_it_stores_a_bank_account_as_ciphertext_and_reads_it_back(banked_org):
    stored = raw("accounts_organisation", "bank_account", banked_org.pk)
    assert stored.startswith("pt1:") and BANK_ACCOUNT not in stored
    assert Organisation.objects.get(pk=banked_org.pk).bank_account == BANK_ACCOUNT
    assert Organisation.objects.values_list("bank_account", flat=True).get(pk=banked_org.pk) == (
        BANK_ACCOUNT
    )


def test_it_stores_a_totp_secret_as_ciphertext(reviewer):
    device = TotpDevice.objects.get(user=reviewer)
    stored = raw("accounts_totpdevice", "secret", device.pk)
    assert stored.startswith("pt1:") and device.secret not in stored


def test_it_keeps_blank_values_blank_and_findable(org_a):
    assert raw("accounts_organisation", "bank_account", org_a.pk) == ""
    assert list(Organisation.objects.filter(bank_account="")) == [org_a]


def test_it_refuses_lookups_on_ciphertext(banked_org):
    with pytest.raises(FieldError, match="bank_account is encrypted"):
        Organisation.objects.filter(bank_account=BANK_ACCOUNT).exists()
    with pytest.raises(FieldError, match="'icontains'"):
        Organisation.objects.filter(bank_account__icontains="6222").exists()


def test_it_still_checks_length_on_the_plaintext():
    with pytest.raises(ValidationError, match="bank_account"):
        do_register_organisation(
            OPERATOR,
            name="北京过长账号有限公司",
            tax_id=compose_uscc("9", "1", "110108", "MA01LNGX"),
            region="11",
            bank_account="6" * 61,
        )


def test_it_names_the_missing_key_when_the_keyring_lacks_it(banked_org):
    with (
        override_settings(PIAOTONG_FIELD_KEYS=generate_key_line("other")),
        pytest.raises(UnknownKeyError, match=r"needs field key id '.+'.*PIAOTONG_FIELD_KEYS"),
    ):
        Organisation.objects.get(pk=banked_org.pk)


def test_it_refuses_a_tampered_token_in_the_table(banked_org):
    stored = raw("accounts_organisation", "bank_account", banked_org.pk)
    set_raw("accounts_organisation", "bank_account", banked_org.pk, stored[:-3] + "AAA")
    with pytest.raises(TamperedTokenError):
        Organisation.objects.get(pk=banked_org.pk)


def test_it_refuses_a_token_copied_into_another_column(org_a, banked_org):
    invoice = Invoice.objects.create(
        kind=InvoiceKind.DIGITAL_ORDINARY, seller=org_a, buyer_name="张三", created_by_label="t"
    )
    stored = raw("accounts_organisation", "bank_account", banked_org.pk)
    set_raw("invoices_invoice", "buyer_phone", invoice.pk, stored)
    with pytest.raises(TamperedTokenError, match=r"invoices\.invoice\.buyer_phone"):
        Invoice.objects.get(pk=invoice.pk)


def test_it_refuses_plaintext_written_around_the_field(banked_org):
    set_raw("accounts_organisation", "bank_account", banked_org.pk, BANK_ACCOUNT)
    with pytest.raises(ValueError, match="unencrypted value"):
        Organisation.objects.get(pk=banked_org.pk)


def test_it_encrypts_a_value_that_looks_like_a_token(org_a):
    lookalike = field_keyring().encrypt("6222", "accounts.organisation.bank_account")
    org_a.bank_account = lookalike
    org_a.save()
    assert Organisation.objects.get(pk=org_a.pk).bank_account == lookalike


def test_it_keeps_key_material_out_of_the_field_definition():
    field = Organisation._meta.get_field("bank_account")
    deconstructed = repr(field.deconstruct())
    for entry in field_keyring().key_ids:
        assert entry not in deconstructed
    assert field_keyring().current.secret.hex() not in deconstructed


def test_it_refuses_an_invalid_buyer_email(clerk_actor, org_a):
    from piaotong.invoices.actions import do_issue_new_invoice
    from piaotong.lib.errors import RuleViolations

    person = draft(
        kind=InvoiceKind.DIGITAL_ORDINARY,
        buyer_kind=BuyerKind.PERSON,
        buyer_name="张三",
        buyer_tax_id="",
        buyer_email="zhang@",
    )
    with pytest.raises(RuleViolations) as raised:
        do_issue_new_invoice(clerk_actor, org_a, person)
    assert [v.code for v in raised.value.violations] == ["invalid_email"]
