"""Rendered invoice documents (发票版式文件) and the failures to render them.

A document is stored content-addressed: its file name is the SHA-256 of its bytes, so the hash
recorded in the ledger names the file, and a file can be checked against its row at any time.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from piaotong.documents.choices import DocumentFormat
from piaotong.invoices.models import Invoice


class Document(models.Model):
    """One rendered file of one issued invoice.

    Invariants: one row per (invoice, format); `sha256` and `size` describe the stored bytes,
    which live at `storage.path_for(sha256, format)`; the row is written in the same transaction
    as the `DocumentRendered` ledger event that records the hash.
    """

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="documents")
    format = models.CharField(_("format"), max_length=8, choices=DocumentFormat.choices)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField(_("size"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invoice", "format"], name="document_invoice_format")
        ]
        verbose_name = _("invoice document")

    def __str__(self) -> str:
        return f"{self.invoice_id}.{self.format}"


class RenderFailure(models.Model):
    """The last failed attempt to render one format of one invoice, kept until it succeeds.

    Invariant: at most one row per (invoice, format); it is deleted in the transaction that
    stores the document, so a row means "still missing, and why".
    """

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="+")
    format = models.CharField(max_length=8, choices=DocumentFormat.choices)
    error = models.TextField()
    attempts = models.PositiveIntegerField(default=1)
    last_attempt_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "format"], name="render_failure_invoice_format"
            )
        ]

    def __str__(self) -> str:
        return f"{self.invoice_id}.{self.format}: {self.error[:60]}"
