"""Forms of the permission change pages (权限变更): asking for a change, deciding one."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.choices import ORGANISATION_ROLES, Role, RoleChange
from piaotong.accounts.models import Organisation, User
from piaotong.accounts.role_requests import MAX_TEXT
from piaotong.lib.errors import RuleViolation, RuleViolations


class MemberChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]  # generic only in the stubs
    def label_from_instance(self, obj: User) -> str:
        name = obj.get_full_name()
        return f"{name} ({obj.username})" if name and name != obj.username else obj.username


class RoleChangeForm(forms.Form):
    """A request to grant or revoke one role of one member of the organisation."""

    user = MemberChoiceField(label=_("User"), queryset=User.objects.none())
    role = forms.ChoiceField(
        label=_("Role"),
        choices=[(role.value, role.label) for role in Role if role in ORGANISATION_ROLES],
    )
    change = forms.ChoiceField(
        label=_("Change"),
        choices=RoleChange.choices,
        initial=RoleChange.GRANT,
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Why this person needs, or no longer needs, this role."),
    )

    def __init__(self, organisation: Organisation, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only people who already work in the organisation: the form never reveals other users.
        members = User.objects.filter(memberships__organisation=organisation).distinct()
        field = self.fields["user"]
        assert isinstance(field, MemberChoiceField)
        field.queryset = members.order_by("username")

    def show(self, error: RuleViolation | RuleViolations) -> None:
        """Put the action's refusals next to the fields they concern."""
        violations = error.violations if isinstance(error, RuleViolations) else [error]
        for violation in violations:
            field = violation.field if violation.field in self.fields else None
            self.add_error(field, violation.text())


class RejectRoleChangeForm(forms.Form):
    note = forms.CharField(
        label=_("Reason for rejecting"),
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
