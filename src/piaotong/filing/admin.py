"""Read-only admin: returns change only through actions."""

from __future__ import annotations

from django.contrib import admin

from piaotong.deduction.admin import ReadOnly
from piaotong.filing.models import VatReturn


@admin.register(VatReturn)
class VatReturnAdmin(ReadOnly):
    list_display = ["organisation", "period", "version", "status", "payable", "submitted_at"]
    list_filter = ["status"]
