"""Forms of the received-invoice and deduction screens: they only parse input; the actions
judge it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.deduction.choices import DeductionState, NonDeductionReason
from piaotong.deduction.periods import parse_period, period_of
from piaotong.deduction.queries import CHANGED
from piaotong.invoices.choices import AuthorityFlag, InvoiceKind, InvoiceStatus
from piaotong.invoices.forms import DecimalTextField
from piaotong.lib.errors import RuleViolation

STATUS_CHOICES = [
    ("", _("All")),
    (CHANGED, _("Changed after receipt (作废/红冲/异常/失控)")),
    (InvoiceStatus.ISSUED, InvoiceStatus.ISSUED.label),
    (InvoiceStatus.PARTIALLY_RED_FLUSHED, InvoiceStatus.PARTIALLY_RED_FLUSHED.label),
    (InvoiceStatus.FULLY_RED_FLUSHED, InvoiceStatus.FULLY_RED_FLUSHED.label),
    (InvoiceStatus.VOIDED, InvoiceStatus.VOIDED.label),
    (AuthorityFlag.ABNORMAL, AuthorityFlag.ABNORMAL.label),
    (AuthorityFlag.OUT_OF_CONTROL, AuthorityFlag.OUT_OF_CONTROL.label),
]


class PeriodField(forms.CharField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 7)
        kwargs.setdefault(
            "widget", forms.TextInput(attrs={"inputmode": "numeric", "placeholder": "YYYYMM"})
        )
        super().__init__(**kwargs)

    def clean(self, value: Any) -> str:
        text = super().clean(value)
        if not text:
            return ""
        try:
            return parse_period(text)
        except RuleViolation as violation:
            raise forms.ValidationError(violation.text(), code=violation.code) from None


class ReceivedFilterForm(forms.Form):
    """Filters of the received-invoice list; invalid values are ignored (and shown as errors)."""

    period = PeriodField(label=_("Issued in (YYYYMM)"), required=False)
    seller = forms.CharField(label=_("Seller name or tax id"), required=False, max_length=100)
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("All")), *InvoiceKind.choices]
    )
    status = forms.ChoiceField(label=_("Status"), required=False, choices=STATUS_CHOICES)
    booked = forms.ChoiceField(
        label=_("Booked"),
        required=False,
        choices=[("", _("All")), ("yes", _("Booked")), ("no", _("Not booked"))],
    )
    state = forms.ChoiceField(
        label=_("Deduction"), required=False, choices=[("", _("All")), *DeductionState.choices]
    )
    number = forms.CharField(label=_("Invoice number"), required=False, max_length=20)

    def filters(self) -> dict[str, Any]:
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


def current_period() -> str:
    return period_of(timezone.localdate())


class SelectForm(forms.Form):
    """Select one invoice: deduct (optionally less than the face tax) or not, with a reason."""

    period = PeriodField(label=_("Tax period (YYYYMM)"))
    deduct = forms.TypedChoiceField(
        label=_("Purpose"),
        choices=[("1", _("Deduct (抵扣)")), ("0", _("Not deduct (不抵扣)"))],
        coerce=lambda value: value == "1",
        initial="1",
    )
    effective_tax = DecimalTextField(label=_("Effective tax (leave empty for the full face tax)"))
    reason = forms.ChoiceField(
        label=_("Reason for not deducting"),
        required=False,
        choices=[("", "—"), *NonDeductionReason.choices],
    )


class BulkSelectForm(forms.Form):
    period = PeriodField(label=_("Tax period (YYYYMM)"))
    invoices = forms.CharField(required=False)
