from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class AuditFilterForm(forms.Form):
    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    action = forms.CharField(label=_("Action"), required=False, max_length=60)
    actor = forms.CharField(label=_("Who"), required=False, max_length=150)
    target = forms.CharField(label=_("Object"), required=False, max_length=120)
