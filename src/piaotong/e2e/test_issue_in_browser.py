"""A person logs in, issues a 数电专票 with several lines and rates, and finds it listed."""

from __future__ import annotations

import re

import pytest

from piaotong.invoices.models import Invoice
from piaotong.lib.taxid import compose_uscc

pytestmark = pytest.mark.django_db(transaction=True)
BUYER = compose_uscc("9", "1", "310115", "MA1BUYER")


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct-horse-battery")
    page.press("input[name=password]", "Enter")
    page.wait_for_url(f"{live_server.url}/")


def fill_line(page, index: int, code: str, name: str, amount: str, rate: str) -> None:
    page.fill(f"input[name=lines-{index}-tax_code]", code)
    page.fill(f"input[name=lines-{index}-item_name]", name)
    page.fill(f"input[name=lines-{index}-amount]", amount)
    # The rate list narrows to the code's allowed rates once the code is known (htmx): wait
    # until that swap and the previews have landed, or a late swap could replace the choice.
    page.wait_for_load_state("networkidle")
    page.wait_for_selector(
        f"select[name=lines-{index}-tax_rate] option[value='{rate}']", state="attached"
    )
    page.select_option(f"select[name=lines-{index}-tax_rate]", rate)
    page.wait_for_load_state("networkidle")


def test_it_issues_a_special_invoice_with_two_rates_in_the_browser(page, live_server, org_a, clerk):
    console_errors: list[str] = []

    def collect(message) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    page.on("console", collect)
    log_in(page, live_server, "clerk")
    page.goto(f"{live_server.url}/invoices/new/")
    page.select_option("select[name=kind]", "digital_special")
    page.fill("input[name=buyer_name]", "上海买方有限公司")
    page.fill("input[name=buyer_tax_id]", BUYER)
    fill_line(page, 0, "1090511030000000000", "笔记本电脑", "1000", "0.13")
    fill_line(page, 1, "3040201030000000000", "软件维护费", "200", "0.06")
    # Live computation: 1000 x 13% + 200 x 6% = 142.00 tax, 1342.00 in total.
    page.wait_for_selector("[data-field=total_tax]:has-text('142.00')", timeout=30_000)
    assert "壹仟叁佰肆拾贰圆整" in page.inner_text(".capitals")
    page.click("button[name=intent][value=issue]")
    page.wait_for_url(re.compile(r"/invoices/[0-9a-f-]{36}/$"))
    invoice = Invoice.objects.get()
    assert invoice.number is not None and len(invoice.number) == 20
    assert invoice.number in page.content()
    assert str(invoice.total_with_tax) == "1342.00"
    page.goto(f"{live_server.url}/invoices/")
    assert invoice.number in page.inner_text("table")
    # The Content-Security-Policy forbids inline code: nothing on these pages may need it.
    assert [e for e in console_errors if "Content Security Policy" in e] == []


def test_it_switches_the_interface_to_english(page, live_server, org_a, clerk):
    log_in(page, live_server, "clerk")
    assert page.get_attribute("html", "lang") == "zh-hans"
    page.click("button[name=language][value=en]")
    page.wait_for_function("document.documentElement.lang === 'en'")
    assert page.get_attribute("html", "lang") == "en"


def test_it_keeps_a_rate_chosen_while_the_rate_list_is_still_loading(
    page, live_server, org_a, clerk
):
    """A slow rate-list answer to the code change must not reset a rate picked meanwhile."""
    slow: list[str] = []

    def delay(route) -> None:
        slow.append(route.request.url)
        page.wait_for_timeout(800)
        route.continue_()

    log_in(page, live_server, "clerk")
    page.goto(f"{live_server.url}/invoices/new/")
    page.route("**/invoices/new/rates/**", delay)
    page.fill("input[name=lines-0-tax_code]", "3040201030000000000")
    page.dispatch_event("input[name=lines-0-tax_code]", "change")  # the slow request starts
    page.select_option("select[name=lines-0-tax_rate]", "0.06")  # picked before it answers
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1_000)
    assert slow, "the rate list was never asked for"
    assert page.input_value("select[name=lines-0-tax_rate]") == "0.06"
