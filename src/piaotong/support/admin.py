"""Read-only admin: tickets and alerts change only through actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from piaotong.support.models import SyncAlert, Ticket


class ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Ticket)
class TicketAdmin(ReadOnly):
    list_display = ["uid", "region", "verdict", "status", "created_at"]
    list_filter = ["status", "region", "verdict"]


@admin.register(SyncAlert)
class SyncAlertAdmin(ReadOnly):
    list_display = ["kind", "region", "opened_at", "closed_at", "notified"]
