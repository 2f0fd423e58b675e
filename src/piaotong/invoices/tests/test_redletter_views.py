"""The red-letter and void web UI, through URLs, as the personas: A's finance manager files and
voids, C's finance manager answers, clerks see no buttons, the outsider sees nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from piaotong.invoices.choices import InvoiceStatus, RedLetterReason, RedLetterStatus
from piaotong.invoices.models import RedLetterConfirmation
from piaotong.invoices.redletter import RedLetterInput, do_request_red_letter
from piaotong.invoices.redletter_rules import RedLineRequest
from piaotong.invoices.tests.conftest import paper

pytestmark = pytest.mark.django_db


@pytest.fixture
def english(client: Client) -> None:
    client.cookies["django_language"] = "en"


def partial_return(amount: str = "100.00") -> RedLetterInput:
    lines = [RedLineRequest(1, Decimal(amount))]
    return RedLetterInput(RedLetterReason.SALES_RETURN, full=False, lines=lines)


def test_it_shows_the_red_letter_button_only_to_allowed_users(
    client, blue, finance_a, clerk, finance_c
):
    url = reverse("invoices:detail", kwargs={"uid": blue.uid})
    new_url = reverse("invoices:red_letter_new", kwargs={"uid": blue.uid})
    client.force_login(finance_a)
    assert new_url in client.get(url).content.decode()
    client.force_login(clerk)
    page = client.get(url).content.decode()
    assert new_url not in page and reverse("invoices:void", kwargs={"uid": blue.uid}) not in page
    assert client.get(new_url).status_code == 403
    client.force_login(finance_c)  # the buyer files too
    assert new_url in client.get(url).content.decode()


def test_it_files_a_partial_request_from_the_form(client, english, blue, finance_a):
    client.force_login(finance_a)
    url = reverse("invoices:red_letter_new", kwargs={"uid": blue.uid})
    form = client.get(url)
    assert form.status_code == 200 and "14,999.97" in form.content.decode()
    response = client.post(
        url, {"side": "seller", "reason": "02", "scope": "partial", "line_1": "250.00"}
    )
    confirmation = RedLetterConfirmation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "invoices:red_letter_detail", kwargs={"uid": confirmation.uid}
    )
    assert confirmation.total_amount == Decimal("-250.00") and not confirmation.is_full
    page = client.get(response["Location"]).content.decode()
    assert "Awaiting the counterparty" in page and blue.number in page


def test_it_shows_rule_violations_on_the_form(client, english, blue, finance_a):
    client.force_login(finance_a)
    url = reverse("invoices:red_letter_new", kwargs={"uid": blue.uid})
    response = client.post(
        url, {"side": "seller", "reason": "02", "scope": "partial", "line_1": "1000.01"}
    )
    assert response.status_code == 200
    assert "no over-reversal" in response.content.decode()
    assert not RedLetterConfirmation.objects.exists()


def test_it_lists_incoming_requests_with_the_time_left_and_confirms(
    client, english, blue, seller, finance_c
):
    confirmation = do_request_red_letter(seller, blue, "seller", partial_return())
    client.force_login(finance_c)
    page = client.get(reverse("invoices:red_letters")).content.decode()
    confirm_url = reverse("invoices:red_letter_confirm", kwargs={"uid": confirmation.uid})
    assert confirm_url in page and ("71 h" in page or "72 h" in page)
    response = client.post(confirm_url)
    assert response.status_code == 302
    confirmation.refresh_from_db()
    assert confirmation.status == RedLetterStatus.ISSUED
    page = client.get(response["Location"]).content.decode()
    assert confirmation.red_number in page
    red_page = client.get(reverse("invoices:detail", kwargs={"uid": confirmation.red_invoice.uid}))
    assert blue.number in red_page.content.decode()  # the red invoice shows its blue one
    blue_page = client.get(reverse("invoices:detail", kwargs={"uid": blue.uid}))
    assert confirmation.red_number in blue_page.content.decode()  # and vice versa


def test_it_refuses_and_withdraws_from_the_list(client, blue, seller, finance_a, finance_c):
    first = do_request_red_letter(seller, blue, "seller", partial_return())
    second = do_request_red_letter(seller, blue, "seller", partial_return())
    client.force_login(finance_c)
    client.post(
        reverse("invoices:red_letter_refuse", kwargs={"uid": first.uid}), {"reason": "不同意"}
    )
    client.force_login(finance_a)
    page = client.get(reverse("invoices:red_letters")).content.decode()
    assert reverse("invoices:red_letter_withdraw", kwargs={"uid": second.uid}) in page
    assert reverse("invoices:red_letter_confirm", kwargs={"uid": second.uid}) not in page
    client.post(reverse("invoices:red_letter_withdraw", kwargs={"uid": second.uid}))
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (RedLetterStatus.REFUSED, RedLetterStatus.WITHDRAWN)


def test_it_answers_404_to_the_outsider(client, blue, seller, outsider):
    confirmation = do_request_red_letter(seller, blue, "seller", partial_return())
    client.force_login(outsider)
    for name in ("red_letter_detail",):
        assert (
            client.get(reverse(f"invoices:{name}", kwargs={"uid": confirmation.uid})).status_code
            == 404
        )
    for name in ("red_letter_confirm", "red_letter_refuse", "red_letter_withdraw"):
        assert (
            client.post(reverse(f"invoices:{name}", kwargs={"uid": confirmation.uid})).status_code
            == 404
        )
    assert (
        client.get(reverse("invoices:red_letter_new", kwargs={"uid": blue.uid})).status_code == 404
    )
    assert (
        client.post(reverse("invoices:void", kwargs={"uid": blue.uid}), {"reason": "x"}).status_code
        == 404
    )
    assert str(confirmation.uid) not in client.get(reverse("invoices:red_letters")).content.decode()
    confirmation.refresh_from_db()
    assert confirmation.status == RedLetterStatus.PENDING


def test_it_voids_a_paper_invoice_from_its_page(client, english, org_a, seller, finance_a):
    invoice = paper(org_a, seller)
    client.force_login(finance_a)
    url = reverse("invoices:detail", kwargs={"uid": invoice.uid})
    assert reverse("invoices:void", kwargs={"uid": invoice.uid}) in client.get(url).content.decode()
    response = client.post(
        reverse("invoices:void", kwargs={"uid": invoice.uid}), {"reason": "填错"}
    )
    assert response["Location"] == url
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOIDED
    page = client.get(url).content.decode()
    assert "Voided at" in page and reverse("invoices:void", kwargs={"uid": invoice.uid}) not in page


def test_it_offers_no_void_for_a_digital_invoice(client, blue, finance_a):
    client.force_login(finance_a)
    page = client.get(reverse("invoices:detail", kwargs={"uid": blue.uid})).content.decode()
    assert reverse("invoices:void", kwargs={"uid": blue.uid}) not in page


def test_it_lists_requests_in_a_constant_number_of_queries(client, blue, seller, finance_c):
    do_request_red_letter(seller, blue, "seller", partial_return("1.00"))
    client.force_login(finance_c)
    url = reverse("invoices:red_letters")
    client.get(url)
    with CaptureQueriesContext(connection) as one:
        client.get(url)
    for _ in range(3):
        do_request_red_letter(seller, blue, "seller", partial_return("1.00"))
    with CaptureQueriesContext(connection) as four:
        client.get(url)
    assert len(four) == len(one)


def test_it_speaks_chinese_by_default(client, blue, seller, finance_c):
    do_request_red_letter(seller, blue, "seller", partial_return())
    client.force_login(finance_c)
    page = client.get(reverse("invoices:red_letters")).content.decode()
    assert "红字确认单" in page and "待对方确认" in page and "销货退回" in page
    assert "小时" in page
