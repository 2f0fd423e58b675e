"""Forms of the issuing screens: the invoice header, its lines (明细行) and the list filters.

Forms only parse and shape input. The domain rules (`piaotong.invoices.rules`) judge it, and
their violations are put back onto the fields here, so every message appears beside the field it
concerns. Terms: an *entry* (开票录入) is the header form plus the line formset of one invoice
being typed; a *filled* line is a line form the user typed into and did not remove.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.forms import formset_factory
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.models import Organisation
from piaotong.invoices.choices import BuyerKind, InvoiceKind, InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.invoices.rules import MAX_LINES, InvoiceDraft, LineDraft, check_draft
from piaotong.lib.capitals import to_chinese_capitals
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.money import RATES, LineAmounts, LineInput, compute_line, fine_text, parse_rate
from piaotong.lib.taxcodes import TaxCode, format_line_name, get_tax_code

LINES_PREFIX = "lines"
BLANK_LINES = 3
ISSUABLE_KINDS = (InvoiceKind.DIGITAL_SPECIAL, InvoiceKind.DIGITAL_ORDINARY)
# Digits with an optional sign, optional thousands commas and an optional fraction. No exponent,
# no NaN or Infinity: what an accountant types, nothing that float() would also accept.
DECIMAL_TEXT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
LINE_PREFIX = re.compile(r"lines-\d{1,4}")


def parse_decimal_text(text: str) -> Decimal | None:
    """A Decimal from what a person typed; full-width digits are accepted, junk is refused.

    >>> parse_decimal_text("１,２００.５０")
    Decimal('1200.50')
    >>> parse_decimal_text("  ") is None
    True
    >>> parse_decimal_text("1e5")
    Traceback (most recent call last):
    ...
    django.core.exceptions.ValidationError: ...
    """
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        return None
    if not DECIMAL_TEXT.fullmatch(text):
        raise forms.ValidationError(
            _("Enter a number such as 1200 or 1,200.50 (digits and one decimal point only)."),
            code="invalid_decimal",
        )
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise forms.ValidationError(_("Enter a valid number."), code="invalid_decimal") from None


class DecimalTextField(forms.CharField):
    """A decimal typed as text and parsed with `Decimal`, never through float."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "decimal", "class": "num"}))
        super().__init__(required=False, max_length=40, **kwargs)

    def clean(self, value: Any) -> Decimal | None:
        return parse_decimal_text(super().clean(value))


def rate_label(key: str) -> str:
    """The label of a tax rate (税率) in the active language."""
    rate = RATES.get(key)
    if rate is None:
        return key
    return rate.label_en if (translation.get_language() or "").startswith("en") else rate.label_zh


def rate_choices(keys: Iterable[str] | None = None) -> list[tuple[str, str]]:
    wanted = list(RATES) if keys is None else [k for k in keys if k in RATES]
    return [("", "—"), *((key, rate_label(key)) for key in wanted)]


def find_tax_code(text: str | None) -> TaxCode | None:
    """The tax classification code (税收分类编码) typed, or None while incomplete or unknown."""
    if not text or not text.strip():
        return None
    try:
        return get_tax_code(text.strip())
    except ValueError:
        return None


class LineForm(forms.Form):
    """One line. The rate list offers the rates the line's tax code allows, once it is known."""

    tax_code = forms.CharField(
        label=_("Tax code"),
        required=False,
        max_length=40,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "inputmode": "numeric", "class": "code"}
        ),
    )
    item_name = forms.CharField(label=_("Item name"), required=False, max_length=200)
    spec = forms.CharField(label=_("Specification"), required=False, max_length=100)
    unit = forms.CharField(label=_("Unit"), required=False, max_length=20)
    quantity = DecimalTextField(label=_("Quantity"))
    unit_price = DecimalTextField(label=_("Unit price"))
    amount = DecimalTextField(label=_("Amount"))
    tax_rate = forms.ChoiceField(label=_("Tax rate"), required=False, choices=())
    tax_inclusive = forms.BooleanField(label=_("Prices include tax"), required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rate_field = self.fields["tax_rate"]
        assert isinstance(rate_field, forms.ChoiceField)
        # Every known rate validates, so a rate the code does not allow gets the domain rule's
        # message; the list shows only the allowed ones.
        rate_field.choices = rate_choices()
        self.tax_code_found = find_tax_code(self._raw("tax_code"))
        if self.tax_code_found is not None:
            rate_field.widget.choices = rate_choices(self.tax_code_found.rates)

    def _raw(self, name: str) -> str | None:
        value = self.data.get(self.add_prefix(name)) if self.is_bound else self.initial.get(name)
        return None if value is None else str(value)

    def allowed_rate_keys(self) -> list[str]:
        return list(self.tax_code_found.rates) if self.tax_code_found else list(RATES)

    def is_filled(self) -> bool:
        return self.is_bound and self.has_changed() and not self.cleaned_data.get("DELETE", False)

    def to_draft(self) -> LineDraft:
        data = self.cleaned_data
        return LineDraft(
            tax_code=data.get("tax_code", ""),
            item_name=data.get("item_name", ""),
            tax_rate=data.get("tax_rate", ""),
            amount=data.get("amount"),
            quantity=data.get("quantity"),
            unit_price=data.get("unit_price"),
            spec=data.get("spec", ""),
            unit=data.get("unit", ""),
            tax_inclusive=data.get("tax_inclusive", False),
        )


# `extra` only shapes the blank form (GET); a posted formset has as many lines as it says.
BaseLineFormSet = formset_factory(
    LineForm,
    extra=BLANK_LINES,
    can_delete=True,
    max_num=MAX_LINES,
    absolute_max=MAX_LINES,
    validate_max=True,
)


class IssueForm(forms.Form):
    """The invoice header: seller, kind and the buyer's details (购买方信息)."""

    seller = forms.ModelChoiceField(
        label=_("Seller"), queryset=Organisation.objects.none(), empty_label=None
    )
    kind = forms.ChoiceField(
        label=_("Invoice kind"),
        choices=[(kind.value, kind.label) for kind in ISSUABLE_KINDS],
        initial=InvoiceKind.DIGITAL_SPECIAL,
    )
    buyer_kind = forms.ChoiceField(
        label=_("Buyer kind"), choices=BuyerKind.choices, initial=BuyerKind.ORGANISATION
    )
    buyer_name = forms.CharField(label=_("Buyer name"), required=False, max_length=200)
    buyer_tax_id = forms.CharField(
        label=_("Buyer taxpayer id"),
        required=False,
        max_length=40,
        help_text=_("Unified social credit code (统一社会信用代码), or resident id for a person."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "class": "code"}),
    )
    buyer_address = forms.CharField(
        label=_("Buyer address and phone"), required=False, max_length=300
    )
    buyer_bank = forms.CharField(label=_("Buyer bank and account"), required=False, max_length=300)
    buyer_email = forms.EmailField(label=_("Buyer email"), required=False)
    buyer_phone = forms.CharField(label=_("Buyer mobile phone"), required=False, max_length=40)
    remarks = forms.CharField(
        label=_("Remarks"), required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, sellers: QuerySet[Organisation], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        seller_field = self.fields["seller"]
        assert isinstance(seller_field, forms.ModelChoiceField)
        seller_field.queryset = sellers

    def to_draft(self, lines: Sequence[LineDraft]) -> InvoiceDraft:
        data = self.cleaned_data
        return InvoiceDraft(
            kind=data.get("kind", ""),
            buyer_kind=data.get("buyer_kind", ""),
            buyer_name=data.get("buyer_name", ""),
            buyer_tax_id=data.get("buyer_tax_id", ""),
            buyer_address=data.get("buyer_address", ""),
            buyer_bank=data.get("buyer_bank", ""),
            buyer_email=data.get("buyer_email", ""),
            buyer_phone=data.get("buyer_phone", ""),
            remarks=data.get("remarks", ""),
            lines=lines,
        )


@dataclass(frozen=True)
class PreviewLine:
    """One filled line as computed: amounts are None while the line cannot be computed yet."""

    position: int
    form: LineForm
    printed_name: str
    amounts: LineAmounts | None


@dataclass(frozen=True)
class Preview:
    """What the invoice would be if issued now; nothing of it is written anywhere."""

    lines: list[PreviewLine]
    total_amount: Decimal
    total_tax: Decimal
    violations: list[RuleViolation] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return self.total_amount + self.total_tax

    @property
    def total_in_capitals(self) -> str:
        try:
            return to_chinese_capitals(self.total)
        except ValueError:
            return ""


def _line_amounts(line: LineDraft) -> LineAmounts | None:
    try:
        rate = parse_rate(line.tax_rate)
        return compute_line(
            LineInput(
                rate=rate,
                amount=line.amount,
                quantity=line.quantity,
                unit_price=line.unit_price,
                tax=None,
                tax_inclusive=line.tax_inclusive,
                kind=line.kind,
            )
        )
    except (RuleViolation, RuleViolations, ArithmeticError, ValueError):
        return None


def _printed_name(form: LineForm, item_name: str) -> str:
    if form.tax_code_found is None or not item_name.strip():
        return item_name
    return format_line_name(form.tax_code_found.short_name, item_name.strip())


def violations_of(error: RuleViolation | RuleViolations) -> list[RuleViolation]:
    return error.violations if isinstance(error, RuleViolations) else [error]


class InvoiceEntry:
    """The header form and line formset of one invoice being typed, judged by the domain rules."""

    def __init__(
        self, sellers: QuerySet[Organisation], data: Mapping[str, Any] | None = None
    ) -> None:
        self.sellers = sellers
        self.form = IssueForm(data, sellers=sellers)
        self.lines = BaseLineFormSet(data, prefix=LINES_PREFIX)
        self.extra_errors: list[str] = []

    @property
    def is_bound(self) -> bool:
        return self.form.is_bound

    @property
    def general_errors(self) -> list[str]:
        """Errors about the invoice as a whole rather than one field."""
        if not self.is_bound:
            return []
        return [*self.form.non_field_errors(), *self.lines.non_form_errors(), *self.extra_errors]

    def add_line(self) -> None:
        """One more blank line, for browsers without JavaScript ("add line" submit button)."""
        data = self.form.data.copy()  # type: ignore[attr-defined]
        key = f"{LINES_PREFIX}-TOTAL_FORMS"
        try:
            count = int(data.get(key, "0"))
        except ValueError:
            count = 0
        data[key] = str(min(max(count, 0) + 1, MAX_LINES))
        self.lines = BaseLineFormSet(data, prefix=LINES_PREFIX)

    def is_valid(self) -> bool:
        return all([self.form.is_valid(), self.lines.is_valid()])

    @property
    def seller(self) -> Organisation | None:
        if self.is_bound and self.form.is_valid():
            seller: Organisation = self.form.cleaned_data["seller"]
            return seller
        initial = self.form["seller"].value()
        return (
            next((s for s in self.sellers if str(s.pk) == str(initial)), None)
            or self.sellers.first()
        )

    def filled_lines(self) -> list[LineForm]:
        if not self.is_bound:
            return []
        self.lines.is_valid()
        return [form for form in self.lines.forms if form.is_filled()]

    def draft(self) -> InvoiceDraft:
        """The draft as typed; call only when `is_valid()`."""
        return self.form.to_draft([form.to_draft() for form in self.filled_lines()])

    def preview(self) -> Preview:
        """Compute every line that can be computed and collect every rule the entry breaks."""
        self.form.is_valid()
        filled = self.filled_lines()
        usable = [form for form in filled if not form.errors]
        drafts = [form.to_draft() for form in usable]
        seller = self.seller
        try:
            checked = check_draft(
                self.form.to_draft(drafts), seller.taxpayer_kind if seller else "general"
            )
        except RuleViolations as many:
            violations = [self._renumber(v, usable) for v in many.violations]
            by_form = {id(form): draft for form, draft in zip(usable, drafts, strict=True)}
            return self._partial_preview(filled, by_form, violations)
        lines = [
            PreviewLine(self.position(form), form, c.printed_name, c.amounts)
            for form, c in zip(usable, checked.lines, strict=True)
        ]
        return Preview(lines, checked.totals.amount, checked.totals.tax)

    def _partial_preview(
        self, filled: list[LineForm], drafts: dict[int, LineDraft], violations: list[RuleViolation]
    ) -> Preview:
        """The lines that compute on their own, while the invoice as a whole does not pass."""
        lines = []
        for form in filled:
            draft = drafts.get(id(form))
            amounts = _line_amounts(draft) if draft is not None else None
            name = _printed_name(form, form.cleaned_data.get("item_name", ""))
            lines.append(PreviewLine(self.position(form), form, name, amounts))
        known = [line.amounts for line in lines if line.amounts is not None]
        return Preview(
            lines,
            sum((a.amount for a in known), Decimal("0.00")),
            sum((a.tax for a in known), Decimal("0.00")),
            violations,
        )

    def position(self, form: LineForm) -> int:
        """The 1-based line number the user sees for a line form."""
        return self.lines.forms.index(form) + 1

    def _renumber(self, violation: RuleViolation, usable: list[LineForm]) -> RuleViolation:
        """Rewrite `lines.<index into the draft>` into `lines.<index into the formset>`."""
        parts = violation.field.split(".")
        if parts[0] != LINES_PREFIX or len(parts) < 2 or not parts[1].isdigit():
            return violation
        index = int(parts[1])
        if index >= len(usable):
            return violation
        parts[1] = str(self.lines.forms.index(usable[index]))
        return RuleViolation(".".join(parts), violation.code, violation.message, violation.params)

    def show(self, violations: Iterable[RuleViolation], *, live: bool = False) -> None:
        """Attach violations to the fields they name; `live` skips fields not typed into yet."""
        for violation in violations:
            form, field_name = self._locate(violation.field)
            if live and self._is_empty(form, field_name, violation):
                continue
            if form is None:
                self.extra_errors.append(violation.text())
            elif field_name in form.fields and field_name not in form.errors:
                form.add_error(field_name, violation.text())
            elif field_name not in form.fields:
                form.add_error(None, violation.text())

    def _locate(self, path: str) -> tuple[forms.Form | None, str | None]:
        parts = path.split(".")
        if parts[0] == LINES_PREFIX:
            if len(parts) >= 2 and parts[1].isdigit() and int(parts[1]) < len(self.lines.forms):
                form = self.lines.forms[int(parts[1])]
                return form, (parts[2] if len(parts) > 2 else None)
            return None, None
        if parts[0] in self.form.fields:
            return self.form, parts[0]
        return self.form, None

    def _is_empty(
        self, form: forms.Form | None, field_name: str | None, violation: RuleViolation
    ) -> bool:
        if violation.field == LINES_PREFIX:
            return not self.filled_lines() or any(f.errors for f in self.filled_lines())
        if form is None or field_name is None or field_name not in form.fields:
            return False
        value = form[field_name].value()
        return value is None or str(value).strip() == ""


class ListFilterForm(forms.Form):
    """Filters of the invoice list; every field is optional and validated before it is used."""

    date_from = forms.DateField(
        label=_("Issued from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("Issued to"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("All")), *InvoiceStatus.choices]
    )
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("All")), *InvoiceKind.choices]
    )
    buyer = forms.CharField(label=_("Buyer"), required=False, max_length=100)
    amount_min = DecimalTextField(label=_("Total from"))
    amount_max = DecimalTextField(label=_("Total to"))
    number = forms.CharField(
        label=_("Invoice number"),
        required=False,
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "class": "code"}),
    )

    def filters(self) -> dict[str, Any]:
        """The valid filters as keyword arguments of `filter_invoices`; invalid ones are ignored."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason for rejecting"), max_length=500, widget=forms.Textarea(attrs={"rows": 2})
    )


def blank_line(index: int) -> LineForm:
    """A blank line form at `index`, as the formset would build it (with its remove box)."""
    form = BaseLineFormSet(prefix=LINES_PREFIX).empty_form
    form.prefix = f"{LINES_PREFIX}-{index}"
    assert isinstance(form, LineForm)
    return form


def entry_data_for(invoice: Invoice) -> dict[str, str]:
    """The issue form's data for an existing draft, as if the user had typed it."""
    lines = list(invoice.lines.all())
    data = {
        "seller": str(invoice.seller_id),
        "kind": invoice.kind,
        "buyer_kind": invoice.buyer_kind,
        "buyer_name": invoice.buyer_name,
        "buyer_tax_id": invoice.buyer_tax_id,
        "buyer_address": invoice.buyer_address,
        "buyer_bank": invoice.buyer_bank,
        "buyer_email": invoice.buyer_email,
        "buyer_phone": invoice.buyer_phone,
        "remarks": invoice.remarks,
        f"{LINES_PREFIX}-TOTAL_FORMS": str(len(lines)),
        f"{LINES_PREFIX}-INITIAL_FORMS": "0",
    }
    for index, line in enumerate(lines):
        prefix = f"{LINES_PREFIX}-{index}-"
        values = {
            "tax_code": line.tax_code,
            "item_name": line.item_name,
            "spec": line.spec,
            "unit": line.unit,
            "quantity": fine_text(line.quantity) or "",
            "unit_price": fine_text(line.unit_price) or "",
            # With quantity and unit price the amount follows from them; typing both invites a
            # one-cent disagreement with the stored 13-decimal unit price.
            "amount": fine_text(line.amount) or "" if line.quantity is None else "",
            "tax_rate": line.tax_rate,
        }
        data |= {prefix + name: value for name, value in values.items()}
    return data
