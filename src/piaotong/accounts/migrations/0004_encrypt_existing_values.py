# Encrypts the bank accounts and TOTP secrets written before their columns were encrypted.
# Idempotent: values that are already tokens ("pt1:...") are left alone.

from django.db import migrations

from piaotong.fields import Column, decrypt_to_plaintext, encrypt_plaintext

COLUMNS = [
    Column("accounts_organisation", "id", "bank_account", "accounts.organisation.bank_account"),
    Column("accounts_totpdevice", "id", "secret", "accounts.totpdevice.secret"),
]


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_encrypt_sensitive_fields"),
    ]

    operations = [
        migrations.RunPython(encrypt_plaintext(*COLUMNS), decrypt_to_plaintext(*COLUMNS)),
    ]
