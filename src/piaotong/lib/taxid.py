"""Taxpayer identifiers (纳税人识别号): the USCC, older taxpayer ids and resident ids.

Terms (china-einvoice.md §10):

- unified social credit code (统一社会信用代码, USCC, GB 32100-2015): 18 characters. 1
  registering authority (登记管理部门, e.g. 9 market regulation, 5 civil affairs, N agriculture,
  Y other), 2 entity kind (机构类别), 3-8 administrative area (登记管理机关行政区划码, GB/T 2260;
  digits 3-4 give the province, 10 the central level), 9-17 the organisation code (组织机构代码,
  GB 11714: 8 characters and its own check character), 18 the check character. Alphabet
  ``0123456789ABCDEFGHJKLMNPQRTUWXY``: never I, O, Z, S or V, which read like 1, 0, 2, 5 and U.
- taxpayer id (纳税人识别号) of older registrations: 15 characters (area + organisation code),
  17 or 20 digits (an old 15- or an 18-digit resident id plus a 2-digit sequence), or 18 (USCC).
- resident id (居民身份证号, GB 11643): 18 digits, the last one may be X; natural persons use it
  as their taxpayer id.

`python-stdnum` computes the resident id's mod-11 check character. The USCC's mod-31 check
character is stdnum's algorithm computed here with a lookup table, because stdnum cleans its
input again on every call (a tenth of checking an invoice draft). `compose_uscc` still uses
stdnum, so the property tests that compose codes and validate them compare the two.
stdnum does not check the organisation code's own check character, which we add. Its USCC format
check (digits in positions 1-8) would refuse real registering authorities such as N (village
collectives), so the format is checked here.

When a check character is wrong, the messages do not reveal the expected one: a mismatch means
one of the other characters is most likely mistyped, and printing the "right" check character
invites changing the wrong one into a valid-looking but different code.

>>> validate_uscc(" 91110000600037341l ")
'91110000600037341L'
>>> compose_uscc("9", "1", "110108", "MA01ABCD")
'91110108MA01ABCD5T'
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from django.utils.translation import gettext_lazy as _
from stdnum.cn import ric, uscc

from piaotong.lib.errors import RuleViolation
from piaotong.lib.regions import is_provincial

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_LENGTH = 18
# Organisations registered by central authorities carry area 100000 in their USCC.
CENTRAL_AREA_PREFIX = "10"
# Residence permits of Hong Kong, Macao and Taiwan residents share the resident-id format.
PERMIT_PREFIXES = frozenset({"81", "82", "83"})
_ORG_VALUES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_ID = re.compile(r"[0-9]{17}[0-9X]")
_LEGACY_PATTERNS = {
    15: re.compile(r"[0-9]{6}[0-9A-Z]{9}"),
    17: re.compile(r"[0-9]{17}"),
    20: re.compile(r"[0-9]{17}[0-9X][0-9]{2}"),
}


def normalize(text: str) -> str:
    """Full-width characters made ASCII, spaces and hyphens removed, letters uppercase.

    >>> normalize(" ９１１１-0000 ")
    '91110000'
    """
    return re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", text)).upper()


_USCC_VALUES = {char: value for value, char in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def uscc_check_char(body: str) -> str:
    """The GB 32100 check character of the first 17 characters of a normalized USCC.

    >>> uscc_check_char("91110000600037341")
    'L'
    >>> uscc_check_char("51440300123456789") == uscc.calc_check_digit("51440300123456789")
    True
    """
    total = sum(_USCC_VALUES[c] * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total) % 31]


def org_code_check_char(body: str) -> str:
    """The GB 11714 check character of an 8-character organisation code body.

    >>> org_code_check_char("60003734")
    '1'
    """
    total = sum(
        _ORG_VALUES.index(char) * weight for char, weight in zip(body, _ORG_WEIGHTS, strict=True)
    )
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def validate_uscc(text: str, *, field: str = "tax_id") -> str:
    """The normalized USCC, or a `RuleViolation` on `field` saying what is wrong."""
    code = normalize(text)
    if len(code) != USCC_LENGTH:
        raise RuleViolation(
            field,
            "uscc_length",
            _(
                "A unified social credit code has 18 characters; %(length)s were given. "
                "Copy it from the business licence."
            ),
            {"length": len(code)},
        )
    _check_uscc_characters(code, field)
    _check_uscc_area(code, field)
    if uscc_check_char(code[:17]) != code[17]:
        raise RuleViolation(
            field,
            "uscc_check_char",
            _(
                "The check character (the 18th) does not match the first 17 characters: one "
                "of them is probably mistyped. Compare the code with the business licence."
            ),
        )
    if org_code_check_char(code[8:16]) != code[16]:
        raise RuleViolation(
            field,
            "org_code_check_char",
            _(
                "The organisation code inside the credit code (characters 9-17) fails its "
                "check: one of them is probably mistyped. Compare with the business licence."
            ),
        )
    return code


def _check_uscc_characters(code: str, field: str) -> None:
    for position, char in enumerate(code, start=1):
        if 3 <= position <= 8 and char not in "0123456789":
            raise RuleViolation(
                field,
                "uscc_character",
                _(
                    "Character %(position)s (%(char)s) must be a digit: characters 3-8 are "
                    "the administrative area code."
                ),
                {"position": position, "char": char},
            )
        if char not in USCC_ALPHABET:
            raise RuleViolation(
                field,
                "uscc_character",
                _(
                    "Character %(position)s (%(char)s) cannot appear in a credit code: it uses "
                    "digits and the letters A-Y except I, O, S, V and Z. Check for a typing error."
                ),
                {"position": position, "char": char},
            )


def _check_uscc_area(code: str, field: str) -> None:
    prefix = code[2:4]
    if prefix == CENTRAL_AREA_PREFIX or is_provincial(prefix):
        return
    raise RuleViolation(
        field,
        "uscc_region",
        _(
            "Characters 3-4 (%(region)s) are not a province's code, so the area code is "
            "mistyped. Compare the code with the business licence."
        ),
        {"region": prefix},
    )


def is_valid_uscc(text: str) -> bool:
    try:
        validate_uscc(text)
    except RuleViolation:
        return False
    return True


def compose_uscc(registering: str, kind: str, area6: str, org8: str) -> str:
    """A valid USCC from its parts, computing both check characters (for demo and test data).

    >>> is_valid_uscc(compose_uscc("5", "1", "440300", "12345678"))
    True
    """
    parts_ok = (
        len(registering) == 1
        and len(kind) == 1
        and len(org8) == 8
        and all(char in USCC_ALPHABET for char in registering + kind + org8)
        and re.fullmatch(r"[0-9]{6}", area6) is not None
    )
    if not parts_ok:
        raise RuleViolation(
            "tax_id",
            "uscc_parts",
            _(
                "Cannot compose a credit code from %(parts)s: give one registering character, "
                "one kind character, six area digits and eight organisation-code characters."
            ),
            {"parts": (registering, kind, area6, org8)},
        )
    body = registering + kind + area6 + org8 + org_code_check_char(org8)
    return validate_uscc(body + uscc.calc_check_digit(body))


def validate_resident_id(text: str, *, field: str = "tax_id", today: date | None = None) -> str:
    """The normalized 18-digit resident id, or a `RuleViolation` on `field`.

    Checks the format, the province, the birth date (not before 1900, not after `today`) and
    the check digit; the old 15-digit ids expired in 2013 and are refused.

    >>> validate_resident_id("11010519491231002x")
    '11010519491231002X'
    """
    code = normalize(text)
    if _RESIDENT_ID.fullmatch(code) is None:
        raise RuleViolation(
            field,
            "resident_id_format",
            _(
                "A resident id has 18 characters, all digits except a possible final X; "
                "%(given)s was given."
            ),
            {"given": code},
        )
    if not (is_provincial(code[:2]) or code[:2] in PERMIT_PREFIXES):
        raise RuleViolation(
            field,
            "resident_id_region",
            _(
                "The first two digits (%(region)s) are not a province's code; "
                "check for a typing error."
            ),
            {"region": code[:2]},
        )
    _check_birth_date(code, field, today or date.today())
    if ric.calc_check_digit(code) != code[17]:
        raise RuleViolation(
            field,
            "resident_id_check_char",
            _(
                "The last character does not match the other 17: one of them is probably "
                "mistyped. Compare the number with the identity card."
            ),
        )
    return code


def _check_birth_date(code: str, field: str, today: date) -> None:
    try:
        born = date(int(code[6:10]), int(code[10:12]), int(code[12:14]))
    except ValueError:
        born = None
    if born is None or not date(1900, 1, 1) <= born <= today:
        raise RuleViolation(
            field,
            "resident_id_birth_date",
            _(
                "Characters 7-14 (%(digits)s) are not a possible date of birth; "
                "check for a typing error."
            ),
            {"digits": code[6:14]},
        )


def is_resident_id(text: str) -> bool:
    try:
        validate_resident_id(text)
    except RuleViolation:
        return False
    return True


def validate_taxpayer_id(
    text: str, *, allow_resident_id: bool = False, field: str = "tax_id"
) -> str:
    """The normalized taxpayer id: a USCC, an older 15/17/20-character id, or (when allowed)
    an 18-digit resident id of a natural person.

    An 18-character value that is a valid resident id is taken as one when allowed; otherwise
    it must be a valid USCC, and the USCC's error is reported.

    >>> validate_taxpayer_id("110108600037341")
    '110108600037341'
    """
    code = normalize(text)
    if len(code) == USCC_LENGTH:
        if allow_resident_id and is_resident_id(code):
            return code
        return validate_uscc(code, field=field)
    pattern = _LEGACY_PATTERNS.get(len(code))
    if pattern is None:
        raise RuleViolation(
            field,
            "taxpayer_id_length",
            _(
                "A taxpayer id has 18 characters (the unified social credit code), or 15, 17 "
                "or 20 for older registrations; %(length)s were given."
            ),
            {"length": len(code)},
        )
    if pattern.fullmatch(code) is None:
        raise RuleViolation(
            field,
            "taxpayer_id_format",
            _(
                "%(given)s is not a taxpayer id: a 15-character id starts with six area digits, "
                "a 17- or 20-character id is a resident id plus two digits."
            ),
            {"given": code},
        )
    return code
