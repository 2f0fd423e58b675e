"""Documents are rendered after commit for invoices that become issued through `Model.save()`.

Issuing a reviewed draft saves the invoice with `update_fields` naming "number"; bulk issuing
inserts rows without signals, so `invoices.actions` calls `schedule_rendering` for those.
Scheduling twice is harmless: rendering skips formats that exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from piaotong.documents.actions import schedule_rendering
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice


@receiver(post_save, sender=Invoice, dispatch_uid="documents-render-issued")
def render_issued_invoice(
    sender: type[Invoice],
    instance: Invoice,
    raw: bool = False,
    update_fields: Any = None,
    **kwargs: Any,
) -> None:
    if raw or instance.status != InvoiceStatus.ISSUED or not instance.number:
        return
    if update_fields is not None and "number" not in update_fields:
        return
    schedule_rendering([instance])
