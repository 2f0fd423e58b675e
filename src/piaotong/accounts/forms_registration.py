"""Forms of the registration application (注册申请) and the tax officer's decision."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.choices import TaxpayerKind
from piaotong.accounts.registration import MAX_DOCUMENT_BYTES, MAX_TEXT, DocumentUpload
from piaotong.lib.errors import RuleViolation, RuleViolations


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name; the action checks count, size and type."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ".pdf,.png,.jpg,.jpeg"}))
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        if isinstance(data, list | tuple):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return [super().clean(data, initial)] if data else []


class DocumentsForm(forms.Form):
    """A form with qualification documents whose action reports RuleViolations."""

    def uploads(self) -> list[DocumentUpload]:
        # One byte more than allowed is enough to tell that a file is too large.
        return [
            DocumentUpload(upload.name or "", upload.read(MAX_DOCUMENT_BYTES + 1))
            for upload in self.cleaned_data["documents"]
        ]

    def show(self, error: RuleViolation | RuleViolations) -> None:
        violations = error.violations if isinstance(error, RuleViolations) else [error]
        for violation in violations:
            field = violation.field if violation.field in self.fields else None
            self.add_error(field, violation.text())


class RegistrationForm(DocumentsForm):
    name = forms.CharField(label=_("Organisation name"), max_length=200)
    tax_id = forms.CharField(label=_("Unified social credit code"), max_length=30)
    taxpayer_kind = forms.ChoiceField(label=_("Taxpayer kind"), choices=TaxpayerKind.choices)
    address = forms.CharField(label=_("Address"), max_length=300, required=False)
    phone = forms.CharField(label=_("Phone"), max_length=40, required=False)
    username = forms.CharField(
        label=_("Admin username"),
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    full_name = forms.CharField(label=_("Full name"), max_length=150)
    email = forms.EmailField(label=_("Email"), max_length=254)
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=_("At least 12 characters, not a common or leaked password."),
    )
    documents = MultipleFileField(
        label=_("Qualification documents (资质证明)"),
        help_text=_(
            "1 to 5 files, PDF, PNG or JPEG, at most 10 MB each: e.g. the business licence."
        ),
    )


class ReapplyForm(DocumentsForm):
    """Applying again after a rejection: new documents and what changed."""

    applicant_note = forms.CharField(
        label=_("What you corrected"),
        max_length=MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("The tax officer reads this beside the reason for the rejection."),
    )
    documents = MultipleFileField(
        label=_("Qualification documents (资质证明)"),
        help_text=_(
            "1 to 5 files, PDF, PNG or JPEG, at most 10 MB each: e.g. the business licence."
        ),
    )


class ReviewForm(forms.Form):
    note = forms.CharField(
        label=_("Reason or note"),
        max_length=MAX_TEXT,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
