"""The tax classification code table, its search, allowed rates and printed line names."""

import pytest
from django.utils import translation

from piaotong.lib.errors import RuleViolation
from piaotong.lib.money import RATES, rates_for_taxpayer
from piaotong.lib.taxcodes import (
    TAX_CODES,
    check_rate_allowed,
    format_line_name,
    get_tax_code,
    search_tax_codes,
)

SOFTWARE = "3040201010000000000"
LEVY_RATES = {"0.05", "0.03", "0.01"}


def test_it_holds_at_least_sixty_well_formed_codes():
    assert len(TAX_CODES) >= 60
    for key, code in TAX_CODES.items():
        assert key == code.code
        assert len(key) == 19
        assert key.isdigit()
        assert key[0] in "123456"
        assert code.short_name
        assert code.name
        assert code.notes
        assert code.rates
        assert set(code.rates) <= set(RATES)
        assert len(set(code.rates)) == len(code.rates)


def test_it_marks_only_class_6_codes_as_not_subject_to_vat():
    for code in TAX_CODES.values():
        assert (code.rates == ("non_taxable",)) is code.code.startswith("6")


def test_it_lets_small_scale_taxpayers_use_every_taxable_code():
    small_scale = rates_for_taxpayer("small_scale")
    for code in TAX_CODES.values():
        if not code.code.startswith("6"):
            assert LEVY_RATES & set(code.rates) & small_scale, code.code


@pytest.mark.parametrize(
    ("code", "short_name", "rate"),
    [
        (SOFTWARE, "信息技术服务", "0.06"),
        ("3040203000000000000", "信息技术服务", "0.06"),
        ("3070401000000000000", "餐饮服务", "0.06"),
        ("3070402000000000000", "住宿服务", "0.06"),
        ("3040603000000000000", "鉴证咨询服务", "0.06"),
        ("3050100000000000000", "建筑服务", "0.09"),
        ("3010102020000000000", "运输服务", "0.09"),
        ("1010101010000000000", "谷物", "0.09"),
        ("1090511030000000000", "计算机", "0.13"),
        ("5010100000000000000", "不动产", "0.05"),
        ("6010000000000000000", "预付卡销售", "non_taxable"),
    ],
)
def test_it_carries_the_common_codes_with_their_rates(code, short_name, rate):
    found = get_tax_code(code)
    assert found.short_name == short_name
    assert rate in found.rates


def test_it_strips_spaces_around_a_code():
    assert get_tax_code(f" {SOFTWARE} ").code == SOFTWARE


@pytest.mark.parametrize(
    "text",
    [
        "",
        "304020101",
        "30402010100000000000",
        "304020101000000000X",
        "３０４０２０１０１００００００００００",
    ],
)
def test_it_asks_for_19_digits(text):
    with pytest.raises(RuleViolation) as raised:
        get_tax_code(text)
    assert (raised.value.field, raised.value.code) == ("tax_code", "unknown_tax_code")
    with translation.override("en"):
        assert "19 digits" in raised.value.text()


def test_it_says_when_a_code_is_not_in_the_table():
    with pytest.raises(RuleViolation) as raised:
        get_tax_code("3999999999999999999")
    assert raised.value.code == "unknown_tax_code"
    with translation.override("en"):
        assert "not in this platform's code table" in raised.value.text()


def test_it_searches_by_code_prefix_in_code_order():
    found = search_tax_codes("30402")
    assert found
    assert all(code.code.startswith("30402") for code in found)
    assert [code.code for code in found] == sorted(code.code for code in found)
    assert len(found) == sum(1 for key in TAX_CODES if key.startswith("30402"))


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("住宿", ["住宿服务"]),
        ("*餐饮服务*", ["餐饮服务"]),
        ("软件", ["软件开发服务", "软件维护服务", "其他软件服务"]),
    ],
)
def test_it_searches_by_name(query, names):
    assert [code.name for code in search_tax_codes(query)] == names


def test_it_finds_codes_by_short_name_too():
    assert {code.name for code in search_tax_codes("运输服务")} >= {
        "铁路旅客运输服务",
        "管道运输服务",
    }


@pytest.mark.parametrize("query", ["", "  ", "**", "不存在的服务", "9"])
def test_it_finds_nothing_for_empty_or_unknown_queries(query):
    assert search_tax_codes(query) == []


def test_it_limits_search_results():
    assert len(search_tax_codes("3", limit=5)) == 5
    assert len(search_tax_codes("3")) == 20


def test_it_allows_a_rate_the_code_lists():
    check_rate_allowed(get_tax_code(SOFTWARE), RATES["0.06"])  # does not raise


def test_it_refuses_a_rate_the_code_does_not_list_and_names_the_allowed_ones():
    with pytest.raises(RuleViolation) as raised:
        check_rate_allowed(get_tax_code("3070401000000000000"), RATES["0.13"])
    found = raised.value
    assert (found.field, found.code) == ("tax_rate", "rate_not_allowed")
    assert found.params["allowed"] == "6%、3%、1%、免税"
    assert found.params["short_name"] == "餐饮服务"


@pytest.mark.parametrize(
    ("short_name", "item_name", "printed"),
    [
        ("信息技术服务", "软件维护费", "*信息技术服务*软件维护费"),
        ("信息技术服务", "*信息技术服务*软件维护费", "*信息技术服务*软件维护费"),
        ("信息技术服务", "  软件维护费 ", "*信息技术服务*软件维护费"),
        ("餐饮服务", "*住宿服务*房费", "*餐饮服务**住宿服务*房费"),
        ("餐饮服务", "餐饮服务", "*餐饮服务*餐饮服务"),
    ],
)
def test_it_prints_line_names_with_the_short_name_once(short_name, item_name, printed):
    assert format_line_name(short_name, item_name) == printed
