"""The received-invoice and deduction pages through URLs: scoping (404 for others), filters,
highlighting, booking, bulk selection with per-invoice errors, the period steps, N+1 guard."""

from __future__ import annotations

from datetime import date

import pytest
from django.urls import reverse

from piaotong.deduction.choices import PeriodStatus
from piaotong.deduction.models import Booking, DeductionPeriod, DeductionSelection
from piaotong.deduction.periods import period_of
from piaotong.deduction.tests.conftest import hub_marks
from piaotong.invoices.choices import InvoiceKind

pytestmark = pytest.mark.django_db


def this_period() -> str:
    return period_of(date.today())


def test_it_lists_received_invoices_and_highlights_changed_ones(
    client, issue, buyer_finance, org_b
):
    normal, flagged = issue(), hub_marks(issue(), authority_flag="abnormal")
    issue(to=org_b)  # not ours
    client.force_login(buyer_finance)
    response = client.get(reverse("deduction:received"))
    assert response.status_code == 200
    page = response.content.decode()
    assert normal.number in page and flagged.number in page
    assert page.count('class="changed"') == 1 and "⚠ 异常" in page
    assert "Received invoices" in page or "进项发票" in page


def test_it_filters_by_status_booked_and_deduction_state(client, issue, buyer_finance):
    normal, flagged = issue(), hub_marks(issue(), authority_flag="abnormal")
    ordinary = issue(kind=InvoiceKind.DIGITAL_ORDINARY)
    client.force_login(buyer_finance)
    url = reverse("deduction:received")
    changed = client.get(url, {"status": "changed"}).content.decode()
    assert flagged.number in changed and normal.number not in changed
    client.post(reverse("deduction:book", kwargs={"uid": normal.uid}))
    booked = client.get(url, {"booked": "yes"}).content.decode()
    assert normal.number in booked and ordinary.number not in booked
    client.post(
        reverse("deduction:bulk_select"),
        {"period": this_period(), "invoice": [str(normal.uid)]},
    )
    selected = client.get(url, {"state": "selected"}).content.decode()
    assert normal.number in selected and ordinary.number not in selected
    special = client.get(url, {"kind": InvoiceKind.DIGITAL_ORDINARY}).content.decode()
    assert ordinary.number in special and normal.number not in special


def test_the_list_costs_the_same_queries_for_many_rows(
    client, issue, buyer_finance, django_assert_max_num_queries
):
    client.force_login(buyer_finance)
    issue()
    url = reverse("deduction:received")
    client.get(url)  # warm caches (session, content types)
    for _ in range(8):
        issue()
    with django_assert_max_num_queries(12):
        response = client.get(url)
    assert response.content.decode().count("deduction/invoices/") >= 9


def test_bulk_selection_is_all_or_nothing_with_a_message_per_invoice(client, issue, buyer_finance):
    good, ordinary = issue(), issue(kind=InvoiceKind.DIGITAL_ORDINARY)
    client.force_login(buyer_finance)
    response = client.post(
        reverse("deduction:bulk_select"),
        {"period": this_period(), "invoice": [str(good.uid), str(ordinary.uid)]},
        follow=True,
    )
    page = response.content.decode()
    assert ordinary.number in page and not DeductionSelection.objects.exists()


def test_other_organisations_get_404(client, issue, outsider, buyer_finance):
    invoice = issue()
    client.force_login(outsider)
    assert client.get(reverse("deduction:detail", kwargs={"uid": invoice.uid})).status_code == 404
    assert client.post(reverse("deduction:book", kwargs={"uid": invoice.uid})).status_code == 404
    buyer_pk = invoice.buyer_id
    assert client.get(reverse("deduction:received"), {"org": buyer_pk}).status_code == 404
    assert not Booking.objects.exists()


def test_the_seller_does_not_see_the_invoice_as_received(client, issue, clerk):
    invoice = issue()
    client.force_login(clerk)
    response = client.get(reverse("deduction:detail", kwargs={"uid": invoice.uid}))
    assert response.status_code == 404


def test_detail_book_select_revoke_and_the_period_steps(client, issue, buyer_finance):
    invoice = issue()
    client.force_login(buyer_finance)
    detail = reverse("deduction:detail", kwargs={"uid": invoice.uid})
    assert client.get(detail).status_code == 200
    client.post(reverse("deduction:book", kwargs={"uid": invoice.uid}))
    assert Booking.objects.filter(invoice=invoice).exists()
    client.post(
        reverse("deduction:select", kwargs={"uid": invoice.uid}),
        {"period": this_period(), "deduct": "1", "effective_tax": "50.00"},
    )
    selection = DeductionSelection.objects.get()
    assert str(selection.effective_tax) == "50.00"
    client.post(reverse("deduction:revoke", kwargs={"uid": invoice.uid}))
    client.post(
        reverse("deduction:select", kwargs={"uid": invoice.uid}),
        {"period": this_period(), "deduct": "0", "reason": "2"},
    )
    period_url = reverse("deduction:period", kwargs={"period": this_period()})
    page = client.get(period_url)
    assert page.status_code == 200 and invoice.number in page.content.decode()
    for verb in ("statistics", "confirm"):
        client.post(
            reverse("deduction:period_action", kwargs={"period": this_period(), "verb": verb})
        )
    assert DeductionPeriod.objects.get().status == PeriodStatus.CONFIRMED
    assert client.get(detail).status_code == 200
    assert client.get(reverse("deduction:periods")).status_code == 200


def test_a_clerk_sees_received_invoices_but_cannot_book(client, issue, buyer_clerk):
    invoice = issue()
    client.force_login(buyer_clerk)
    assert client.get(reverse("deduction:received")).status_code == 200
    page = client.get(reverse("deduction:detail", kwargs={"uid": invoice.uid})).content.decode()
    assert reverse("deduction:book", kwargs={"uid": invoice.uid}) not in page
    response = client.post(reverse("deduction:book", kwargs={"uid": invoice.uid}))
    assert response.status_code == 403
    assert not Booking.objects.exists()


def test_the_navigation_shows_received_invoices_only_with_the_right(
    client, issue, buyer_finance, tax_officer
):
    client.force_login(buyer_finance)
    assert (
        reverse("deduction:received") in client.get(reverse("invoices:dashboard")).content.decode()
    )
    client.force_login(tax_officer)
    assert (
        reverse("deduction:received")
        not in client.get(reverse("invoices:dashboard")).content.decode()
    )
