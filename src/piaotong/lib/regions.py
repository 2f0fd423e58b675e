"""Tax regions (税务地区): the provincial-level bureaus that issue and hold invoices.

Terms:

- region (省级税务局 / 省级行政区): identified by the first two digits of its GB/T 2260
  administrative-division code, e.g. Beijing = 11, Guangdong = 44. These two digits are digits
  3-4 of a 20-digit 数电 invoice number and digits 3-4 of a 统一社会信用代码 (USCC).
- national platform (国家税务总局): code ``"00"``. It is this platform's hub, not an
  administrative division: no invoice number or USCC carries it (`Region.is_national`).
- separately planned city (计划单列市): Dalian, Ningbo, Xiamen, Qingdao and Shenzhen have tax
  bureaus of provincial rank. Their GB/T 2260 city codes (2102, 3302, 3502, 3702, 4403) are firm
  and are the first four digits of their legacy 发票代码. The two digits they use inside a
  20-digit number are not published (china-einvoice.md §1.1, marked open), and any two-digit
  code we invented could collide with a real one. So they are kept out of `REGIONS`, in
  `SEPARATELY_PLANNED_CITIES`, keyed by their four-digit area code; add them to the data file
  as regions once a public source gives their codes.

The table is data (``data/regions.json``), not code.

>>> get_region("11").name_en
'Beijing'
>>> region_for_uscc("91110000600037341L").short_zh
'北京'
>>> get_region("99") is None
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

NATIONAL_CODE = "00"
_DATA_FILE = Path(__file__).with_name("data") / "regions.json"


@dataclass(frozen=True)
class Region:
    """A provincial-level tax region, or the national platform (code "00")."""

    code: str
    name_zh: str
    name_en: str
    short_zh: str = ""

    @property
    def is_national(self) -> bool:
        return self.code == NATIONAL_CODE


@dataclass(frozen=True)
class SeparatelyPlannedCity:
    """A 计划单列市: a city with a provincial-rank tax bureau, inside `province`."""

    area: str
    name_zh: str
    name_en: str
    province: str


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_DATA_FILE.read_text(encoding="utf-8"))
    return data


_DATA = _load()

REGIONS: Mapping[str, Region] = MappingProxyType(
    {row["code"]: Region(**row) for row in _DATA["regions"]}
)
SEPARATELY_PLANNED_CITIES: Mapping[str, SeparatelyPlannedCity] = MappingProxyType(
    {
        row["area"]: SeparatelyPlannedCity(**row)
        for row in _DATA["separately_planned_cities"]["cities"]
    }
)


def get_region(code: str) -> Region | None:
    """The region with this two-digit code, the national platform for "00", else None."""
    return REGIONS.get(code)


def is_provincial(code: str) -> bool:
    """True for the code of a provincial-level region (not the national platform).

    >>> is_provincial("44"), is_provincial("00"), is_provincial("4")
    (True, False, False)
    """
    region = REGIONS.get(code)
    return region is not None and not region.is_national


def region_for_uscc(uscc: str) -> Region | None:
    """The provincial region of a USCC's registering area (its digits 3-4), if known.

    USCCs of organisations registered at central level carry area 100000 and get None.
    """
    code = uscc.strip()[2:4]
    return REGIONS[code] if is_provincial(code) else None


def separately_planned_city(area: str) -> SeparatelyPlannedCity | None:
    """The 计划单列市 whose four-digit area code this is, if any.

    >>> separately_planned_city("4403").name_en
    'Shenzhen'
    """
    return SEPARATELY_PLANNED_CITIES.get(area)
