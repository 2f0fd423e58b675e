from django.contrib import admin

from piaotong.ledger.models import AuditEntry, LedgerEvent


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Ledger rows are append-only: the admin may look, never touch."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(LedgerEvent)
class LedgerEventAdmin(ReadOnlyAdmin):
    list_display = ["stream", "seq", "kind", "writer", "occurred_at"]
    search_fields = ["stream"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["seq", "actor_label", "action", "target", "occurred_at"]
    search_fields = ["target", "actor_label"]
