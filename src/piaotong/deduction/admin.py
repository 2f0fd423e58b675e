"""Read-only admin: buyer-side facts change only through actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection


class ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Booking)
class BookingAdmin(ReadOnly):
    list_display = ["invoice", "buyer", "booked_at", "booked_by_label"]


@admin.register(DeductionPeriod)
class DeductionPeriodAdmin(ReadOnly):
    list_display = ["buyer", "period", "status", "confirmed_at"]
    list_filter = ["status"]


@admin.register(DeductionSelection)
class DeductionSelectionAdmin(ReadOnly):
    list_display = ["invoice", "deduction_period", "purpose", "effective_tax", "revoked_at"]
