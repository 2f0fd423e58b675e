"""The region table: 31 provincial-level regions, the national platform, and what is left out."""

import pytest

from piaotong.lib.regions import (
    REGIONS,
    SEPARATELY_PLANNED_CITIES,
    get_region,
    is_provincial,
    region_for_uscc,
    separately_planned_city,
)

PROVINCIAL_CODES = {
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65",
}  # fmt: skip


def test_it_lists_the_31_provincial_regions_and_the_national_platform():
    assert set(REGIONS) == PROVINCIAL_CODES | {"00"}
    assert {code for code in REGIONS if is_provincial(code)} == PROVINCIAL_CODES


@pytest.mark.parametrize(
    ("code", "name_zh", "name_en"),
    [
        ("11", "北京市", "Beijing"),
        ("44", "广东省", "Guangdong"),
        ("65", "新疆维吾尔自治区", "Xinjiang"),
        ("00", "国家税务总局", "State Taxation Administration (national platform)"),
    ],
)
def test_it_names_regions_in_both_languages(code, name_zh, name_en):
    region = get_region(code)
    assert region is not None
    assert (region.code, region.name_zh, region.name_en) == (code, name_zh, name_en)


def test_it_gives_every_region_distinct_names():
    for attribute in ("name_zh", "name_en", "short_zh"):
        names = [getattr(region, attribute) for region in REGIONS.values()]
        assert all(names)
        assert len(set(names)) == len(names)


@pytest.mark.parametrize("code", ["99", "1", "110", "", "71", "81"])
def test_it_knows_no_other_region(code):
    assert get_region(code) is None
    assert not is_provincial(code)


def test_it_marks_only_the_hub_as_national():
    assert [region.code for region in REGIONS.values() if region.is_national] == ["00"]


def test_it_keeps_separately_planned_cities_out_of_the_regions():
    assert set(SEPARATELY_PLANNED_CITIES) == {"2102", "3302", "3502", "3702", "4403"}
    region_names = {region.name_zh for region in REGIONS.values()}
    for city in SEPARATELY_PLANNED_CITIES.values():
        assert city.name_zh not in region_names
        assert is_provincial(city.province)
        assert city.area.startswith(city.province)


def test_it_finds_a_separately_planned_city_by_its_area():
    city = separately_planned_city("3702")
    assert city is not None
    assert city.name_zh == "青岛市"
    assert separately_planned_city("1100") is None


@pytest.mark.parametrize(
    ("uscc", "code"),
    [
        ("91110000600037341L", "11"),
        ("91440300MA5F00000X", "44"),
        (" 92650100MA0000000A", "65"),
        ("11100000000013127X", None),
        ("91990000000000000A", None),
        ("91", None),
    ],
)
def test_it_finds_the_region_of_a_credit_code(uscc, code):
    region = region_for_uscc(uscc)
    assert (region.code if region else None) == code
