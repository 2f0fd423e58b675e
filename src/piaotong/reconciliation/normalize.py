"""Normalised keys for purchase reconciliation (进项核对): invoice numbers, seller identities.

Terms:

- invoice key (发票键): what identifies an invoice in both the books and on the platform. A
  数电票 is identified by its 20-digit number (numbers are assigned nationally, so they are
  unique); a legacy invoice by its code (发票代码, 10 or 12 digits) plus number (发票号码, 8
  digits). Books write numbers with spaces, full-width digits (全角), an Excel apostrophe, a
  "No." prefix, or the code and number run together; `invoice_key` undoes all of that.
- legal entity (法人主体): the organisation behind a seller tax id. Two tax ids belong to the same
  legal entity when their embedded organisation code (组织机构代码, GB 11714) is the same: the
  old 15-character taxpayer id is area (6) + organisation code (9), and the USCC that replaced
  it (三证合一) carries the same 9 characters at positions 9-17, also when the company moved to
  another district and got a new area part (china-einvoice.md §9 "taxpayer id changed", §10).
  A branch (分公司) has its own USCC with its own organisation code, and nothing in a USCC names
  the head office, so a branch and its head office can only be linked by name:
  "北京云帆科技有限公司上海分公司" is a branch of "北京云帆科技有限公司".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from piaotong.lib.taxid import is_valid_uscc

DIGITAL_LENGTH = 20
LEGACY_NUMBER_LENGTH = 8
LEGACY_CODE_LENGTHS = (10, 12)
USCC_LENGTH = 18
OLD_TAX_ID_LENGTH = 15

_PREFIX = re.compile(r"^(?:NO\.?|N[OΟ]|#|№)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s\-_'\"`.,:：/\\]")
_BRANCH = re.compile(
    r"^(?P<entity>.+(?:股份有限公司|有限责任公司|有限公司|集团公司|公司|集团))"
    r".+?(?:分公司|分厂|分店|分行|支行|营业部|办事处|分部|分所|支公司|分中心)$"
)


@dataclass(frozen=True, slots=True)
class InvoiceKey:
    """An invoice as written in the books, normalised.

    `number` is 20 digits (数电) or 8 digits (legacy); `code` is the legacy 发票代码 or "".
    `cleaned` says whether normalising changed more than surrounding whitespace.
    """

    code: str
    number: str
    cleaned: bool

    @property
    def key(self) -> str:
        """One string per invoice: the 20-digit number, or code + number for legacy invoices.

        >>> invoice_key("26112000000000000042").key
        '26112000000000000042'
        >>> invoice_key("12345678", "1100191130").key
        '110019113012345678'
        """
        return self.code + self.number


def clean_digits(text: str) -> str:
    """Full-width characters made ASCII, and prefixes and separators removed.

    >>> clean_digits(" No.２６１１ 2000-0000 ")
    '261120000000'
    """
    text = unicodedata.normalize("NFKC", text).strip()
    return _SEPARATORS.sub("", _PREFIX.sub("", text.strip()))


def invoice_key(number: str, code: str = "") -> InvoiceKey:
    """Normalise an invoice number (and legacy code) as written in the books.

    A legacy code run together with its number is split; a number only of digits is expected,
    but anything else is kept as written (so it can still be matched or reported).

    >>> invoice_key("'２６１１ 2000 0000 0000 0042")
    InvoiceKey(code='', number='26112000000000000042', cleaned=True)
    >>> invoice_key("110019113012345678")
    InvoiceKey(code='1100191130', number='12345678', cleaned=True)
    >>> invoice_key("01100210010612345678").code
    '011002100106'
    >>> invoice_key("12345678", " 1100191130")
    InvoiceKey(code='1100191130', number='12345678', cleaned=False)
    """
    digits, code_digits = clean_digits(number), clean_digits(code)
    cleaned = digits != number.strip() or code_digits != code.strip()
    if not code_digits and _is_run_in_legacy(digits):
        code_length = len(digits) - LEGACY_NUMBER_LENGTH
        return InvoiceKey(digits[:code_length], digits[code_length:], True)
    if code_digits and digits.startswith(code_digits) and len(digits) > LEGACY_NUMBER_LENGTH:
        digits, cleaned = digits[len(code_digits) :], True
    return InvoiceKey(code_digits, digits, cleaned)


def _is_run_in_legacy(digits: str) -> bool:
    """10 + 8 digits, or 12 + 8 where the 12-digit code starts with 0 (a 数电 number of 20
    digits starts with the year, never 0)."""
    if not digits.isdigit():
        return False
    return len(digits) == 18 or (len(digits) == 20 and digits[0] == "0")


def tax_id_key(text: str) -> str:
    """A seller tax id as compared: full-width made ASCII, separators removed, upper case.

    >>> tax_id_key(" 91110108ma01abcd5t ")
    '91110108MA01ABCD5T'
    """
    return re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", text)).upper()


def organisation_code(tax_id: str) -> str:
    """The 9-character organisation code (组织机构代码) inside a USCC or an old 15-character
    taxpayer id, or "" for other ids (resident ids, 17 or 20 digits), which carry none.

    >>> organisation_code("91110108MA01ABCD5T")
    'MA01ABCD5'
    >>> organisation_code("110108MA01ABCD5")
    'MA01ABCD5'
    >>> organisation_code("110101199003070015")
    ''
    """
    tax_id = tax_id_key(tax_id)
    # An 18-digit id is a resident id unless its USCC check character fits.
    if len(tax_id) == USCC_LENGTH and (not tax_id.isdigit() or is_valid_uscc(tax_id)):
        return tax_id[8:17]
    if len(tax_id) == OLD_TAX_ID_LENGTH:
        return tax_id[6:]
    return ""


def name_key(name: str) -> str:
    """A company name as compared: full-width made ASCII, spaces removed, parentheses unified.

    >>> name_key(" 北京云帆科技（北京）有限公司 ")
    '北京云帆科技(北京)有限公司'
    """
    return re.sub(r"\s", "", unicodedata.normalize("NFKC", name))


def legal_entity_name(name: str) -> str:
    """The legal entity's name: a branch's name without its branch part.

    >>> legal_entity_name("北京云帆科技有限公司上海分公司")
    '北京云帆科技有限公司'
    >>> legal_entity_name("中国工商银行股份有限公司北京海淀支行")
    '中国工商银行股份有限公司'
    >>> legal_entity_name("北京公司管理有限公司上海分公司")
    '北京公司管理有限公司'
    >>> legal_entity_name("北京云帆科技有限公司")
    '北京云帆科技有限公司'
    """
    key = name_key(name)
    match = _BRANCH.match(key)
    return match.group("entity") if match else key


def one_digit_apart(a: str, b: str) -> str:
    """How two numbers of the same length differ if they are one typing slip apart: "digit" (one
    digit different), "swap" (two adjacent digits swapped) or "" (equal or further apart).

    >>> one_digit_apart("26112000000000000042", "26112000000000000043")
    'digit'
    >>> one_digit_apart("26112000000000000042", "26112000000000000024")
    'swap'
    >>> one_digit_apart("26112000000000000042", "26112000000000000123")
    ''
    """
    if len(a) != len(b) or a == b:
        return ""
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) == 1:
        return "digit"
    if (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and a[diff[0]] == b[diff[1]]
        and a[diff[1]] == b[diff[0]]
    ):
        return "swap"
    return ""
