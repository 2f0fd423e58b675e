"""Forms of invitations (邀请用户): inviting someone, and accepting an invitation."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.choices import ORGANISATION_ROLES, Role
from piaotong.accounts.role_requests import MAX_TEXT
from piaotong.lib.errors import RuleViolation, RuleViolations


class ShowsViolations(forms.Form):
    def show(self, error: RuleViolation | RuleViolations) -> None:
        """Put the action's refusals next to the fields they concern."""
        violations = error.violations if isinstance(error, RuleViolations) else [error]
        for violation in violations:
            field = violation.field if violation.field in self.fields else None
            self.add_error(field, violation.text())


class InvitationForm(ShowsViolations):
    """An invitation of one new user to one role of the organisation."""

    email = forms.EmailField(label=_("Email"))
    full_name = forms.CharField(label=_("Full name"), max_length=150)
    role = forms.ChoiceField(
        label=_("Role"),
        choices=[(role.value, role.label) for role in Role if role in ORGANISATION_ROLES],
    )
    reason = forms.CharField(
        label=_("Reason"),
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Why this person needs this role."),
    )


class AcceptInvitationForm(ShowsViolations):
    username = forms.CharField(label=_("Username"), max_length=150)
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 12 characters; not a common or breached password."),
    )
