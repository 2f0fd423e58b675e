# Encrypts the buyer phone numbers and emails written before their columns were encrypted.
# Idempotent: values that are already tokens ("pt1:...") are left alone.

from django.db import migrations

from piaotong.fields import Column, decrypt_to_plaintext, encrypt_plaintext

COLUMNS = [
    Column("invoices_invoice", "id", "buyer_email", "invoices.invoice.buyer_email"),
    Column("invoices_invoice", "id", "buyer_phone", "invoices.invoice.buyer_phone"),
]


class Migration(migrations.Migration):

    dependencies = [
        ("invoices", "0002_encrypt_buyer_contact"),
    ]

    operations = [
        migrations.RunPython(encrypt_plaintext(*COLUMNS), decrypt_to_plaintext(*COLUMNS)),
    ]
