"""Forms of the verification and delivery pages. They only shape input: the rules in
`verification.rules` judge it, and their violations are put back beside the fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.verification.choices import DeliveryChannel

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_NUMERIC = {"inputmode": "numeric", "class": "code", "autocomplete": "off"}


def _text(
    label: StrOrPromise, attrs: dict[str, str] | None = None, **options: object
) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        max_length=options.pop("max_length", 60),  # type: ignore[arg-type]
        widget=forms.TextInput(attrs=attrs or {}),
        **options,  # type: ignore[arg-type]
    )


class ViolationsMixin:
    """Put rule violations beside the fields they name; others go to the form as a whole."""

    def show(self, error: RuleViolation | RuleViolations) -> None:
        violations = error.violations if isinstance(error, RuleViolations) else [error]
        for violation in violations:
            name = violation.field if violation.field in self.fields else None  # type: ignore[attr-defined]
            self.add_error(name, violation.text())  # type: ignore[attr-defined]


class DigitalForm(ViolationsMixin, forms.Form):
    number = _text(_("Invoice number (发票号码, 20 digits)"), {**_NUMERIC, "maxlength": "24"})
    issue_date = _text(
        _("Issue date (开票日期)"), {"placeholder": "2026-11-28", "autocomplete": "off"}
    )
    total_with_tax = _text(
        _("Total including tax (价税合计)"),
        {"inputmode": "decimal", "autocomplete": "off"},
        help_text=_("The amount after 价税合计（小写）, not the amount excluding tax."),
    )


class LegacyForm(ViolationsMixin, forms.Form):
    code = _text(_("Invoice code (发票代码, 10 or 12 digits)"), _NUMERIC)
    number = _text(_("Invoice number (发票号码, 8 digits)"), _NUMERIC)
    issue_date = _text(
        _("Issue date (开票日期)"), {"placeholder": "2026-11-28", "autocomplete": "off"}
    )
    amount = _text(
        _("Amount excluding tax (不含税金额)"),
        {"inputmode": "decimal", "autocomplete": "off"},
        help_text=_("For special invoices (专票)."),
    )
    check_code = _text(
        _("Last 6 digits of the check code (校验码后六位)"),
        _NUMERIC,
        help_text=_("For ordinary invoices (普票)."),
    )


class QrForm(ViolationsMixin, forms.Form):
    qr_text = forms.CharField(
        label=_("QR code text (二维码内容)"),
        required=False,
        max_length=500,
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "01,32,,26112000000000000001,113.00,20261128,,A1B2"}
        ),
    )


class UploadForm(ViolationsMixin, forms.Form):
    file = forms.FileField(
        label=_("QR code image or invoice file (PNG, JPEG, PDF, XML, OFD)"),
        required=False,
        help_text=_("At most 10 MB."),
    )


def upload_too_large(size: int) -> RuleViolation:
    return RuleViolation(
        "file",
        "file_too_large",
        _("The file has %(size)s bytes; at most %(max)s can be verified."),
        {"size": size, "max": MAX_UPLOAD_BYTES},
    )


class BulkForm(ViolationsMixin, forms.Form):
    spreadsheet = forms.FileField(
        label=_("Spreadsheet of invoices (.xlsx or CSV)"),
        required=False,
        help_text=_(
            "First row: 发票号码, 开票日期, 价税合计 (legacy invoices: 发票代码, 金额 or 校验码), "
            "or one column 二维码."
        ),
    )


class DeliveryForm(ViolationsMixin, forms.Form):
    channel = forms.ChoiceField(
        label=_("Send by"), choices=DeliveryChannel.choices, widget=forms.RadioSelect
    )
    address = forms.CharField(
        label=_("Email address or mobile number"), max_length=254, required=False
    )
    formats = forms.MultipleChoiceField(
        label=_("Files (email)"),
        choices=[("pdf", "PDF"), ("ofd", "OFD"), ("xml", "XML")],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=["pdf", "ofd", "xml"],
    )
