"""Read-only admin screens: every change to these rows goes through an audited action."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from piaotong.accounts.models import ApiKey, Membership, Organisation, RoleChangeRequest, User
from piaotong.ledger.admin import ReadOnlyAdmin

admin.site.register(User, UserAdmin)


@admin.register(Organisation)
class OrganisationAdmin(ReadOnlyAdmin):
    list_display = ["name", "tax_id", "region", "taxpayer_kind", "requires_dual_review"]
    search_fields = ["name", "tax_id"]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "organisation", "role"]
    list_filter = ["role"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "organisation", "prefix", "created_at", "revoked_at"]
    exclude = ["secret_hash"]


@admin.register(RoleChangeRequest)
class RoleChangeRequestAdmin(ReadOnlyAdmin):
    list_display = [
        "organisation",
        "user",
        "role",
        "change",
        "status",
        "requested_by",
        "decided_by",
    ]
    list_filter = ["status", "change"]
