"""Legacy invoice identifiers (税控发票): invoice code (发票代码) plus invoice number (发票号码).

Terms (china-einvoice.md §1.2):

- invoice code (发票代码): 10 digits on paper 专票/普票, 12 digits on 电子普票, 卷票, 通行费 and
  电子专票 invoices. It encodes an area (地区, four digits of GB/T 2260, Beijing = 1100), a year
  and the invoice kind (票种).
- invoice number (发票号码): 8 digits, the sequence within the code.
- check code (校验码): 20 digits printed on 普票-family invoices only; verification (查验) asks
  for its last 6 digits, while 专票-family invoices are verified with the pre-tax amount
  instead. `LegacyInvoiceInfo.needs_check_code` says which fourth field to ask for.

Layouts, from public code (marked [code] in the reference, so decoding is best effort):

- 10 digits: 1-4 area, 5-6 year, 7 printing batch, 8 kind (1/5 专票, 3/6 普票, 2/7 货运专票),
  9 number of copies, 10 amount version.
- 12 digits: 1 is ``0``, 2-5 area, 6-7 year, 8-10 batch, 11-12 kind (11 电子普票, 12 通行费电子普票,
  13 电子专票, 06/07 卷票, 04/05 折叠普票).

Real codes break these patterns, so a code of the right length that fits no pattern decodes to
kind "unknown" rather than being refused. An unknown kind asks for the check code, because
every 专票 kind above is recognised and the rest are mostly 普票.

>>> info = decode_legacy("1100191130", "12345678")
>>> info.kind, info.region.name_en, info.year, info.needs_check_code
('special', 'Beijing', 2019, False)
>>> decode_legacy("011002100106", "00000001").kind_label_zh
'增值税普通发票（卷票）'
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation
from piaotong.lib.regions import REGIONS, Region, is_provincial

_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


@dataclass(frozen=True)
class _Kind:
    label_zh: str
    label_en: str
    needs_check_code: bool


KINDS: dict[str, _Kind] = {
    "special": _Kind("增值税专用发票", "VAT special invoice", False),
    "freight_special": _Kind(
        "货物运输业增值税专用发票", "Freight transport VAT special invoice", False
    ),
    "electronic_special": _Kind("增值税电子专用发票", "VAT electronic special invoice", False),
    "ordinary": _Kind("增值税普通发票", "VAT ordinary invoice", True),
    "electronic_ordinary": _Kind("增值税电子普通发票", "VAT electronic ordinary invoice", True),
    "toll_electronic_ordinary": _Kind(
        "收费公路通行费增值税电子普通发票", "Toll road VAT electronic ordinary invoice", True
    ),
    "roll": _Kind("增值税普通发票（卷票）", "VAT ordinary invoice (roll)", True),
    "folded_ordinary": _Kind("增值税普通发票（折叠票）", "VAT ordinary invoice (folded)", True),
    "unknown": _Kind("未识别的票种", "Unrecognised invoice kind", True),
}
_TEN_DIGIT_KINDS = {
    "1": "special",
    "5": "special",
    "2": "freight_special",
    "7": "freight_special",
    "3": "ordinary",
    "6": "ordinary",
}
_TWELVE_DIGIT_KINDS = {
    "11": "electronic_ordinary",
    "12": "toll_electronic_ordinary",
    "13": "electronic_special",
    "06": "roll",
    "07": "roll",
    "04": "folded_ordinary",
    "05": "folded_ordinary",
}


@dataclass(frozen=True)
class LegacyInvoiceInfo:
    """What a legacy code and number say about the invoice.

    `area` is the four-digit area code, or "" when the code's layout or area is not recognised;
    `year` is None in the same case.
    """

    code: str
    number: str
    code_length: int
    area: str
    region: Region | None
    year: int | None
    kind: str
    kind_label_zh: str
    kind_label_en: str
    needs_check_code: bool


def decode_legacy(code: str, number: str) -> LegacyInvoiceInfo:
    """Decode an invoice code and number; refuse only wrong lengths or non-digits."""
    code, number = _normalize(code), _normalize(number)
    _check_digits("code", code, (10, 12))
    _check_digits("number", number, (8,))
    area, year_digits, kind = _layout(code)
    known_area = is_provincial(area[:2])
    facts = KINDS[kind]
    return LegacyInvoiceInfo(
        code=code,
        number=number,
        code_length=len(code),
        area=area if known_area else "",
        region=REGIONS[area[:2]] if known_area else None,
        year=_year(year_digits) if known_area else None,
        kind=kind,
        kind_label_zh=facts.label_zh,
        kind_label_en=facts.label_en,
        needs_check_code=facts.needs_check_code,
    )


def _layout(code: str) -> tuple[str, str, str]:
    """(area, two-digit year, kind) as the code's layout places them."""
    if len(code) == 10:
        return code[:4], code[4:6], _TEN_DIGIT_KINDS.get(code[7], "unknown")
    if code[0] == "0":
        return code[1:5], code[5:7], _TWELVE_DIGIT_KINDS.get(code[10:], "unknown")
    return "", "", "unknown"


def _normalize(text: str) -> str:
    return text.strip().translate(_FULL_WIDTH_DIGITS)


def _year(two_digits: str) -> int:
    # The 税控 system started in 1994 and was replaced by 数电 invoices in the 2020s, so a
    # two-digit year from 90 up belongs to the 1990s and every other one to this century.
    value = int(two_digits)
    return 1900 + value if value >= 90 else 2000 + value


def _check_digits(field: str, value: str, lengths: tuple[int, ...]) -> None:
    if len(value) in lengths and value.isascii() and value.isdigit():
        return
    if field == "code":
        message = _(
            "An invoice code (发票代码) has 10 or 12 digits; %(given)s was given. "
            "Copy it from the top right of the invoice."
        )
    else:
        message = _(
            "An invoice number (发票号码) has 8 digits; %(given)s was given. "
            "Copy it from the top right of the invoice, keeping leading zeros."
        )
    raise RuleViolation(field, f"legacy_{field}_format", message, {"given": value})
