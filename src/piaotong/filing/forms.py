"""Forms of the return screens."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class AmendForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason for the amendment"),
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
