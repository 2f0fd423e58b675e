from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from piaotong.accounts.models import ApiKey, Membership, Organisation, User

admin.site.register(User, UserAdmin)


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "tax_id", "region", "taxpayer_kind", "requires_dual_review"]
    search_fields = ["name", "tax_id"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["user", "organisation", "role"]
    list_filter = ["role"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "organisation", "prefix", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "secret_hash"]
