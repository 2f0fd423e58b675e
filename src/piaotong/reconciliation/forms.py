"""Forms of the reconciliation pages: upload with options, match by hand, select for deduction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import Organisation
from piaotong.reconciliation.actions import ImportOptions
from piaotong.reconciliation.choices import ImportKind, ItemStatus


class UploadForm(forms.Form):
    organisation = forms.ModelChoiceField(
        queryset=Organisation.objects.none(), label=_("Organisation")
    )
    kind = forms.ChoiceField(choices=ImportKind.choices, label=_("Kind of list"))
    file = forms.FileField(
        label=_("File (.xlsx or CSV)"),
        help_text=_("One row per invoice; the first sheet is read. Up to 1,000,000 rows."),
    )
    default_seller_tax_id = forms.CharField(
        required=False,
        max_length=20,
        label=_("Supplier tax id"),
        help_text=_("Only for a supplier's list without a seller tax id column."),
    )
    date_window_days = forms.IntegerField(
        min_value=0, max_value=90, initial=10, label=_("Date window (days)")
    )
    per_line_tolerance = forms.DecimalField(
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=2,
        initial=Decimal("0.01"),
        label=_("Rounding allowance per line"),
    )
    per_invoice_tolerance = forms.DecimalField(
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=2,
        initial=Decimal("1.27"),
        label=_("Rounding allowance per invoice"),
    )

    def __init__(self, *args: Any, organisations: QuerySet[Organisation], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["organisation"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = organisations
        if organisations.count() == 1:
            field.initial = organisations.first()

    def options(self) -> ImportOptions:
        data = self.cleaned_data
        return ImportOptions(
            kind=data["kind"],
            default_seller_tax_id=data["default_seller_tax_id"].strip(),
            date_window_days=data["date_window_days"],
            per_line_tolerance=data["per_line_tolerance"],
            per_invoice_tolerance=data["per_invoice_tolerance"],
        )


class StatusFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", _("All")), *ItemStatus.choices], required=False, label=_("Status")
    )
    number = forms.CharField(required=False, max_length=40, label=_("Invoice number"))


class MatchForm(forms.Form):
    invoice_number = forms.CharField(max_length=20, label=_("Invoice number on the platform"))


def current_period() -> str:
    return timezone.localdate().strftime("%Y%m")


class DeductForm(forms.Form):
    period = forms.RegexField(
        regex=r"^\d{6}$",
        max_length=6,
        label=_("Tax period (YYYYMM)"),
        error_messages={"invalid": _("Write the period as YYYYMM, e.g. 202603.")},
    )
    skip_refused = forms.BooleanField(
        required=False, label=_("Leave out invoices that cannot be selected, select the rest")
    )
