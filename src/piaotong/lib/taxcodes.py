"""Tax classification codes (税收分类编码): the 19-digit code every invoice line carries.

Terms:

- tax classification code (商品和服务税收分类编码): 19 digits from the national code table; the
  first digit is the class (1 goods 货物, 2 labour 劳务, 3 services 服务, 4 intangible assets
  无形资产, 5 real estate 不动产, 6 not subject to VAT 未发生销售行为的不征税项目), each further
  pair of digits one level down.
- short name (简称): printed between asterisks before the item name (品名), so a line reads
  ``*信息技术服务*软件维护费``.
- allowed rates: the `piaotong.lib.money.RATES` keys a line with this code may carry.

The table (``data/taxcodes.json``) holds the common codes only, each with a note on how sure we
are of it; it is data, meant to be replaced by the full official table.

>>> get_tax_code("3070401000000000000").short_name
'餐饮服务'
>>> format_line_name("信息技术服务", "软件维护费")
'*信息技术服务*软件维护费'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import MappingProxyType

from django.utils.translation import gettext_lazy as _

from piaotong.lib.errors import RuleViolation
from piaotong.lib.money import RATES, TaxRate

CODE_LENGTH = 19
_DATA_FILE = Path(__file__).with_name("data") / "taxcodes.json"


@dataclass(frozen=True)
class TaxCode:
    """One row of the code table. Invariant: `rates` are keys of `money.RATES`."""

    code: str
    short_name: str
    name: str
    rates: tuple[str, ...]
    notes: str = ""

    @property
    def rate_labels(self) -> str:
        return "、".join(RATES[key].label_zh for key in self.rates)


def _load() -> dict[str, TaxCode]:
    rows = json.loads(_DATA_FILE.read_text(encoding="utf-8"))["codes"]
    table = {row["code"]: TaxCode(**{**row, "rates": tuple(row["rates"])}) for row in rows}
    unknown = {key for code in table.values() for key in code.rates} - set(RATES)
    if unknown:
        raise ValueError(f"{_DATA_FILE.name} names unknown rate keys: {sorted(unknown)}")
    return table


TAX_CODES: Mapping[str, TaxCode] = MappingProxyType(_load())


def get_tax_code(code: str) -> TaxCode:
    """The table row for `code`, or a `RuleViolation` on field "tax_code"."""
    code = code.strip()
    if len(code) != CODE_LENGTH or not (code.isascii() and code.isdigit()):
        raise RuleViolation(
            "tax_code",
            "unknown_tax_code",
            _(
                "A tax classification code has 19 digits; %(code)s is not one. "
                "Search the code table by name to find it."
            ),
            {"code": code},
        )
    try:
        return TAX_CODES[code]
    except KeyError:
        raise RuleViolation(
            "tax_code",
            "unknown_tax_code",
            _(
                "The tax classification code %(code)s is not in this platform's code table. "
                "Search the table by name, or ask an administrator to add the code."
            ),
            {"code": code},
        ) from None


def search_tax_codes(query: str, limit: int = 20) -> list[TaxCode]:
    """Codes starting with `query` when it is digits, else whose names contain it.

    >>> [c.name for c in search_tax_codes("餐饮")]
    ['餐饮服务']
    >>> len(search_tax_codes("3040201"))
    3
    """
    query = query.strip().strip("*")
    if not query:
        return []
    if query.isdigit():
        found = (c for c in TAX_CODES.values() if c.code.startswith(query))
    else:
        found = (c for c in TAX_CODES.values() if query in c.short_name or query in c.name)
    return list(islice(found, limit))


def check_rate_allowed(tax_code: TaxCode, rate: TaxRate) -> None:
    """Refuse a rate the code does not allow, naming the ones it does."""
    if rate.key in tax_code.rates:
        return
    raise RuleViolation(
        "tax_rate",
        "rate_not_allowed",
        _("%(rate)s is not allowed for %(short_name)s (%(code)s); choose one of: %(allowed)s."),
        {
            "rate": rate.label_zh,
            "short_name": tax_code.short_name,
            "code": tax_code.code,
            "allowed": tax_code.rate_labels,
        },
    )


def format_line_name(short_name: str, item_name: str) -> str:
    """The printed line name ``*简称*品名``, without doubling a prefix already there.

    >>> format_line_name("餐饮服务", "*餐饮服务*餐费")
    '*餐饮服务*餐费'
    """
    prefix = f"*{short_name}*"
    item_name = item_name.strip()
    return item_name if item_name.startswith(prefix) else prefix + item_name
