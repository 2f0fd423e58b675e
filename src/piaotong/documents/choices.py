"""Document formats (版式文件): the three files an issued invoice is delivered as."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class DocumentFormat(models.TextChoices):
    PDF = "pdf", "PDF"
    XML = "xml", "XML"
    OFD = "ofd", _("OFD (GB/T 33190)")


CONTENT_TYPES: dict[str, str] = {
    DocumentFormat.PDF: "application/pdf",
    DocumentFormat.XML: "application/xml",
    DocumentFormat.OFD: "application/ofd",
}
