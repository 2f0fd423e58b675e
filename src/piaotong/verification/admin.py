from django.contrib import admin

from piaotong.verification.models import Delivery, VerificationLog


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Verification logs and deliveries are written by actions only: the admin may look."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(VerificationLog)
class VerificationLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "channel", "input_kind", "outcome", "identifier", "principal"]
    list_filter = ["outcome", "channel", "input_kind"]
    search_fields = ["identifier"]


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "invoice", "channel", "status", "attempts", "sent_at"]
    list_filter = ["status", "channel"]
    exclude = ["address"]
