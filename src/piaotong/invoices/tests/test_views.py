"""The issuing web UI, through URLs, as the personas of conftest: A's clerk (开票员) and
reviewer (复核员), and the outsider, a clerk of B who must never learn what A issues."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.actions import do_grant_role
from piaotong.accounts.choices import Role
from piaotong.accounts.models import Organisation, User
from piaotong.invoices import actions
from piaotong.invoices.choices import InvoiceKind, InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.invoices.rules import InvoiceDraft, LineDraft
from piaotong.lib.taxid import compose_uscc
from piaotong.testing import OPERATOR, make_org, make_user

pytestmark = pytest.mark.django_db

COMPUTER = "1090511030000000000"  # *计算机*, 13%
SOFTWARE = "3040201030000000000"  # *信息技术服务*, 6% (not 13%)
BUYER_USCC = compose_uscc("9", "1", "310115", "MA1BUYER")  # not registered here


@pytest.fixture
def english(client: Client) -> None:
    """The user switched to English (the language cookie), so messages are asserted in English."""
    client.cookies["django_language"] = "en"


@pytest.fixture
def dual_org(clerk: User, reviewer: User) -> Organisation:
    """An organisation under dual review (双人复核) where A's clerk and reviewer also work."""
    organisation = make_org("北京审慎科技有限公司", "110108", "MA01DUAL", requires_dual_review=True)
    do_grant_role(OPERATOR, clerk, organisation, Role.CLERK)
    do_grant_role(OPERATOR, reviewer, organisation, Role.REVIEWER)
    return organisation


def line_draft(amount: str = "100.00", code: str = COMPUTER, rate: str = "0.13") -> LineDraft:
    return LineDraft(tax_code=code, item_name="笔记本电脑", tax_rate=rate, amount=Decimal(amount))


def invoice_draft(buyer_name: str = "上海买方有限公司", amount: str = "100.00") -> InvoiceDraft:
    return InvoiceDraft(
        kind=InvoiceKind.DIGITAL_SPECIAL,
        buyer_name=buyer_name,
        buyer_tax_id=BUYER_USCC,
        lines=[line_draft(amount)],
    )


def issue(user: User, seller: Organisation, **kwargs: str) -> Invoice:
    return actions.do_issue_new_invoice(actor_for_user(user), seller, invoice_draft(**kwargs))


def pending(user: User, seller: Organisation) -> Invoice:
    actor = actor_for_user(user)
    return actions.do_submit_for_review(
        actor, actions.do_create_draft(actor, seller, invoice_draft())
    )


def form_data(seller: Organisation, intent: str = "issue", **overrides: str) -> dict[str, str]:
    data = {
        "intent": intent,
        "seller": str(seller.pk),
        "kind": InvoiceKind.DIGITAL_SPECIAL,
        "buyer_kind": "organisation",
        "buyer_name": "上海买方有限公司",
        "buyer_tax_id": BUYER_USCC,
        "buyer_address": "",
        "buyer_bank": "",
        "buyer_email": "",
        "buyer_phone": "",
        "remarks": "合同号 HT-2025-001",
        "lines-TOTAL_FORMS": "3",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "0",
        "lines-MAX_NUM_FORMS": "2000",
        "lines-0-tax_code": COMPUTER,
        "lines-0-item_name": "笔记本电脑",
        "lines-0-quantity": "",
        "lines-0-unit_price": "",
        "lines-0-amount": "100",
        "lines-0-tax_rate": "0.13",
    }
    return data | overrides


def error_slot(html: str, name: str) -> str:
    found = re.search(
        rf'<div class="errors" id="err-{re.escape(name)}"[^>]*>(.*?)</div>', html, re.S
    )
    assert found, f"no error slot for {name}"
    return found.group(1)


# --- Login required ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dashboard", "list", "new", "review", "tax_codes"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, name):
    response = client.get(reverse(f"invoices:{name}"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("accounts:login"))


def test_it_sends_anonymous_posts_to_the_login_page_without_writing(client, org_a):
    response = client.post(reverse("invoices:new"), form_data(org_a))
    assert response.status_code == 302
    assert not Invoice.objects.exists()


def test_it_reloads_the_page_when_an_htmx_request_comes_from_an_expired_session(client, org_a):
    response = client.post(
        reverse("invoices:preview"), form_data(org_a), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response["HX-Refresh"] == "true"
    assert not response.content


# --- Dashboard ---------------------------------------------------------------------------


def test_it_shows_the_month_and_the_latest_invoices_on_the_dashboard(client, clerk, org_a):
    invoice = issue(clerk, org_a, amount="1000.00")
    client.force_login(clerk)
    response = client.get(reverse("invoices:dashboard"))
    html = response.content.decode()
    assert response.status_code == 200
    assert org_a.name in html
    assert invoice.number in html
    summary = next(s for s in response.context["summaries"] if s.organisation == org_a)
    assert summary.issued_count == 1
    assert summary.issued_total == Decimal("1130.00")
    assert summary.quota_used == Decimal("1000.00")


def test_it_builds_the_dashboard_in_few_queries(
    client, clerk, org_a, dual_org, django_assert_max_num_queries
):
    for _ in range(5):
        issue(clerk, org_a)
    pending(clerk, dual_org)
    client.force_login(clerk)
    # session, user, memberships, organisations, counts, quota, latest invoices
    with django_assert_max_num_queries(8):
        client.get(reverse("invoices:dashboard"))


# --- Issue form --------------------------------------------------------------------------


def test_it_offers_only_the_organisations_the_user_may_draft_for(client, clerk, org_a, org_b):
    client.force_login(clerk)
    response = client.get(reverse("invoices:new"))
    html = response.content.decode()
    assert response.status_code == 200
    assert org_a.name in html
    assert org_b.name not in html
    assert 'name="lines-TOTAL_FORMS" value="3"' in html
    assert 'name="lines-INITIAL_FORMS" value="0"' in html
    assert 'name="lines-2-amount"' in html


def test_it_refuses_the_issue_form_to_a_reviewer(client, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("invoices:new")).status_code == 403


def test_it_previews_the_tax_of_a_line_without_writing(client, clerk, org_a):
    client.force_login(clerk)
    response = client.post(
        reverse("invoices:preview"), form_data(org_a), headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert '<td class="num" data-field="tax">13.00</td>' in html
    assert '<td class="num" data-field="gross">113.00</td>' in html
    assert "壹佰壹拾叁圆整" in html
    assert "*计算机*笔记本电脑" in html
    assert not Invoice.objects.exists()


def test_it_previews_tax_inclusive_prices(client, clerk, org_a):
    client.force_login(clerk)
    data = form_data(org_a, **{"lines-0-amount": "113.00", "lines-0-tax_inclusive": "on"})
    html = client.post(reverse("invoices:preview"), data).content.decode()
    assert '<td class="num" data-field="amount">100.00</td>' in html
    assert '<td class="num" data-field="tax">13.00</td>' in html


def test_it_shows_preview_errors_only_for_fields_already_typed(client, clerk, org_a):
    client.force_login(clerk)
    data = form_data(org_a, buyer_name="", buyer_tax_id="91110108MA01XXXX00")
    html = client.post(reverse("invoices:preview"), data).content.decode()
    assert error_slot(html, "buyer_tax_id").strip()
    assert not error_slot(html, "buyer_name").strip()
    assert 'hx-swap-oob="true"' in html


def test_it_issues_an_invoice_now_and_shows_it(client, clerk, org_a):
    client.force_login(clerk)
    response = client.post(reverse("invoices:new"), form_data(org_a))
    invoice = Invoice.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("invoices:detail", kwargs={"uid": invoice.uid})
    assert invoice.status == InvoiceStatus.ISSUED
    assert re.fullmatch(r"\d{20}", invoice.number or "")
    assert invoice.total_with_tax == Decimal("113.00")
    assert invoice.created_by == clerk
    page = client.get(response.url).content.decode()
    assert invoice.number in page
    assert "电子发票（增值税专用发票）" in page
    assert "壹佰壹拾叁圆整" in page


def test_it_saves_a_draft_that_can_be_issued_later(client, clerk, org_a):
    client.force_login(clerk)
    client.post(reverse("invoices:new"), form_data(org_a, intent="draft"))
    draft = Invoice.objects.get()
    assert draft.status == InvoiceStatus.DRAFT
    assert draft.number is None
    response = client.post(reverse("invoices:issue", kwargs={"uid": draft.uid}))
    draft.refresh_from_db()
    assert response.status_code == 302
    assert draft.status == InvoiceStatus.ISSUED
    assert re.fullmatch(r"\d{20}", draft.number or "")


def test_it_shows_a_bad_buyer_uscc_beside_the_field_and_writes_nothing(client, clerk, org_a):
    client.force_login(clerk)
    response = client.post(
        reverse("invoices:new"), form_data(org_a, buyer_tax_id="91110108MA01XXXX00")
    )
    assert response.status_code == 200
    assert "buyer_tax_id" in response.context["entry"].form.errors
    assert error_slot(response.content.decode(), "buyer_tax_id").strip()
    assert Invoice.objects.count() == 0


def test_it_refuses_markup_in_the_buyer_name(client, clerk, org_a):
    client.force_login(clerk)
    response = client.post(
        reverse("invoices:new"), form_data(org_a, buyer_name="<script>alert(1)</script>")
    )
    html = response.content.decode()
    assert "buyer_name" in response.context["entry"].form.errors
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert Invoice.objects.count() == 0


@pytest.mark.parametrize("junk", ["12abc", "1e5", "NaN", "1.2.3", "Infinity"])
def test_it_refuses_junk_numbers_with_a_field_message(client, clerk, org_a, junk):
    client.force_login(clerk)
    response = client.post(reverse("invoices:new"), form_data(org_a, **{"lines-0-amount": junk}))
    line = response.context["entry"].lines.forms[0]
    assert "amount" in line.errors
    assert Invoice.objects.count() == 0


def test_it_accepts_thousands_separators_and_full_width_digits(client, clerk, org_a):
    client.force_login(clerk)
    data = form_data(org_a, **{"lines-0-amount": "１,０００.５０"})
    assert client.post(reverse("invoices:new"), data).status_code == 302
    assert Invoice.objects.get().total_amount == Decimal("1000.50")


def test_it_puts_a_line_error_on_the_line_that_has_it(client, clerk, org_a):
    client.force_login(clerk)
    data = form_data(org_a)
    # Line 1 is left blank; line 2 asks for 13% on a software service, which allows 6% only.
    for field in ["tax_code", "item_name", "amount", "tax_rate"]:
        data[f"lines-2-{field}"] = data.pop(f"lines-0-{field}")
    data["lines-2-tax_code"] = SOFTWARE
    response = client.post(reverse("invoices:new"), data)
    lines = response.context["entry"].lines.forms
    assert "tax_rate" in lines[2].errors
    assert not lines[0].errors
    assert not lines[1].errors
    assert error_slot(response.content.decode(), "lines-2-tax_rate").strip()
    assert Invoice.objects.count() == 0


def test_it_ignores_lines_marked_for_removal(client, clerk, org_a):
    client.force_login(clerk)
    data = form_data(
        org_a,
        **{
            "lines-1-tax_code": COMPUTER,
            "lines-1-item_name": "显示器",
            "lines-1-amount": "50",
            "lines-1-tax_rate": "0.13",
            "lines-1-DELETE": "on",
        },
    )
    assert client.post(reverse("invoices:new"), data).status_code == 302
    assert Invoice.objects.get().lines.count() == 1


def test_it_asks_for_at_least_one_line(client, english, clerk, org_a):
    client.force_login(clerk)
    data = form_data(org_a)
    for field in ["tax_code", "item_name", "amount", "tax_rate"]:
        data[f"lines-0-{field}"] = ""
    response = client.post(reverse("invoices:new"), data)
    assert "Add at least one line." in error_slot(response.content.decode(), "__all__")
    assert not Invoice.objects.exists()


def test_it_refuses_a_seller_the_user_does_not_work_for(client, outsider, org_a):
    client.force_login(outsider)
    response = client.post(reverse("invoices:new"), form_data(org_a))
    assert response.status_code == 200
    assert "seller" in response.context["entry"].form.errors
    assert org_a.name not in response.content.decode()
    assert not Invoice.objects.exists()


def test_it_requires_the_csrf_token(clerk, org_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(clerk)
    assert client.post(reverse("invoices:new"), form_data(org_a)).status_code == 403
    assert not Invoice.objects.exists()


def test_it_adds_a_line_without_javascript(client, clerk, org_a):
    client.force_login(clerk)
    html = client.post(
        reverse("invoices:new"), form_data(org_a, intent="add_line")
    ).content.decode()
    assert 'name="lines-TOTAL_FORMS" value="4"' in html
    assert 'name="lines-3-amount"' in html
    assert 'value="笔记本电脑"' in html
    assert not Invoice.objects.exists()


def test_it_returns_one_new_line_for_htmx(client, clerk, org_a):
    client.force_login(clerk)
    response = client.post(
        reverse("invoices:add_line"), form_data(org_a), headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert 'name="lines-3-item_name"' in html
    assert 'name="lines-3-DELETE"' in html
    assert 'id="id_lines-TOTAL_FORMS" hx-swap-oob="true"' in html
    assert 'value="4"' in html
    assert "<html" not in html


def test_it_suggests_tax_codes_by_name(client, clerk):
    client.force_login(clerk)
    response = client.get(
        reverse("invoices:tax_codes"), {"lines-0-tax_code": "软件"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert f'<option value="{SOFTWARE}">' in html
    assert "<html" not in html


def test_it_lists_only_the_rates_a_tax_code_allows(client, clerk):
    client.force_login(clerk)
    response = client.get(
        reverse("invoices:line_rates"),
        {"prefix": "lines-0", "lines-0-tax_code": SOFTWARE, "lines-0-tax_rate": "0.13"},
    )
    html = response.content.decode()
    assert 'value="0.06"' in html
    assert 'value="0.13"' not in html
    assert response["HX-Trigger-After-Settle"] == "line-changed"


# --- Dual review -------------------------------------------------------------------------


def test_it_offers_submit_for_review_instead_of_issue_under_dual_review(client, clerk, dual_org):
    client.force_login(clerk)
    html = client.post(reverse("invoices:preview"), form_data(dual_org)).content.decode()
    assert 'value="submit"' in html
    assert 'value="issue"' not in html


def test_it_runs_the_dual_review_flow(client, clerk, reviewer, dual_org):
    client.force_login(clerk)
    response = client.post(reverse("invoices:new"), form_data(dual_org, intent="submit"))
    invoice = Invoice.objects.get()
    assert response.status_code == 302
    assert invoice.status == InvoiceStatus.PENDING_REVIEW

    # A clerk has no reviewer role: the action refuses, nothing changes.
    assert client.post(reverse("invoices:approve", kwargs={"uid": invoice.uid})).status_code == 403
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PENDING_REVIEW

    client.force_login(reviewer)
    queue = client.get(reverse("invoices:review")).content.decode()
    assert str(invoice.uid) in queue
    response = client.post(
        reverse("invoices:approve", kwargs={"uid": invoice.uid}),
        {"next": reverse("invoices:review")},
    )
    assert response.status_code == 302
    assert response.url == reverse("invoices:review")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.ISSUED
    assert re.fullmatch(r"\d{20}", invoice.number or "")
    assert invoice.reviewed_by == reviewer


def test_it_shows_the_refusal_when_someone_approves_their_own_draft(client, english, dual_org):
    manager = make_user("manager", dual_org, Role.FINANCE_MANAGER)
    invoice = pending(manager, dual_org)
    client.force_login(manager)
    response = client.post(reverse("invoices:approve", kwargs={"uid": invoice.uid}), follow=True)
    assert "Nobody approves their own invoice" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PENDING_REVIEW


def test_it_sends_a_draft_back_with_the_reason(client, clerk, reviewer, dual_org):
    invoice = pending(clerk, dual_org)
    client.force_login(reviewer)
    client.post(reverse("invoices:reject", kwargs={"uid": invoice.uid}), {"reason": "买方名称有误"})
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.DRAFT
    assert invoice.review_note == "买方名称有误"
    client.force_login(clerk)
    assert (
        "买方名称有误"
        in client.get(reverse("invoices:detail", kwargs={"uid": invoice.uid})).content.decode()
    )


def test_it_refuses_a_rejection_without_a_reason(client, english, clerk, reviewer, dual_org):
    invoice = pending(clerk, dual_org)
    client.force_login(reviewer)
    response = client.post(
        reverse("invoices:reject", kwargs={"uid": invoice.uid}), {"reason": " "}, follow=True
    )
    assert "Say why the draft is rejected" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PENDING_REVIEW


def test_it_keeps_the_review_queue_to_the_reviewers_organisations(
    client, clerk, dual_org, outsider, org_b
):
    invoice = pending(clerk, dual_org)
    client.force_login(outsider)
    assert str(invoice.uid) not in client.get(reverse("invoices:review")).content.decode()


# --- List --------------------------------------------------------------------------------


def test_it_filters_the_list(client, clerk, org_a):
    issue(clerk, org_a, buyer_name="上海买方有限公司", amount="100.00")
    other = issue(clerk, org_a, buyer_name="广州另一家有限公司", amount="5000.00")
    client.force_login(clerk)
    page = client.get(reverse("invoices:list"), {"buyer": "广州"}).context["page"]
    assert [i.pk for i in page.object_list] == [other.pk]
    page = client.get(reverse("invoices:list"), {"amount_min": "1,000"}).context["page"]
    assert [i.pk for i in page.object_list] == [other.pk]
    page = client.get(reverse("invoices:list"), {"number": other.number}).context["page"]
    assert [i.pk for i in page.object_list] == [other.pk]
    page = client.get(reverse("invoices:list"), {"status": InvoiceStatus.DRAFT}).context["page"]
    assert list(page.object_list) == []


def test_it_ignores_junk_filters_and_says_so(client, clerk, org_a):
    issue(clerk, org_a)
    client.force_login(clerk)
    response = client.get(
        reverse("invoices:list"), {"amount_min": "lots", "date_from": "yesterday"}
    )
    assert response.status_code == 200
    assert len(response.context["page"].object_list) == 1
    assert error_slot(response.content.decode(), "amount_min").strip()


def test_it_refreshes_only_the_table_for_htmx(client, clerk, org_a):
    invoice = issue(clerk, org_a)
    client.force_login(clerk)
    response = client.get(
        reverse("invoices:list"), {"buyer": "", "status": "issued"}, headers={"HX-Request": "true"}
    )
    html = response.content.decode()
    assert invoice.number in html
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]
    assert response["HX-Push-Url"] == reverse("invoices:list") + "?status=issued"


def test_it_lists_with_the_same_number_of_queries_however_many_invoices(client, clerk, org_a):
    client.force_login(clerk)
    issue(clerk, org_a)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("invoices:list"))
    for _ in range(12):
        issue(clerk, org_a)
    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("invoices:list"))
    assert len(response.context["page"].object_list) == 13
    assert len(many) == len(few)


def test_it_lists_in_a_constant_number_of_queries(client, clerk, org_a, django_assert_num_queries):
    for _ in range(3):
        issue(clerk, org_a)
    client.force_login(clerk)
    # session, user, memberships, count, page
    with django_assert_num_queries(5):
        client.get(reverse("invoices:list"))


def test_it_paginates_by_fifty(client, clerk, org_a):
    actor = actor_for_user(clerk)
    actions.do_issue_invoices(actor, org_a, [invoice_draft() for _ in range(51)])
    client.force_login(clerk)
    first = client.get(reverse("invoices:list"))
    assert len(first.context["page"].object_list) == 50
    second = client.get(reverse("invoices:list"), {"page": "2"})
    assert len(second.context["page"].object_list) == 1


# --- Detail and isolation ----------------------------------------------------------------


def test_it_lays_out_the_invoice_like_a_digital_invoice(client, clerk, org_a):
    invoice = issue(clerk, org_a)
    client.force_login(clerk)
    html = client.get(reverse("invoices:detail", kwargs={"uid": invoice.uid})).content.decode()
    for text in [
        invoice.number,
        "*计算机*笔记本电脑",
        "13%",
        "¥113.00",
        "壹佰壹拾叁圆整",
        invoice.payload_hash,
        invoice.signing_key_id,
        org_a.tax_id,
        BUYER_USCC,
    ]:
        assert text in html


def test_it_hides_another_organisations_invoice(client, clerk, org_a, outsider):
    invoice = issue(clerk, org_a)
    draft = actions.do_create_draft(actor_for_user(clerk), org_a, invoice_draft())
    client.force_login(outsider)
    for uid in [invoice.uid, draft.uid]:
        assert client.get(reverse("invoices:detail", kwargs={"uid": uid})).status_code == 404
        assert client.post(reverse("invoices:issue", kwargs={"uid": uid})).status_code == 404
    assert invoice.number not in client.get(reverse("invoices:list")).content.decode()


# --- Language ----------------------------------------------------------------------------


def test_it_switches_to_english(client, clerk):
    client.force_login(clerk)
    assert '<html lang="zh-hans">' in client.get(reverse("invoices:dashboard")).content.decode()
    response = client.post(
        reverse("set_language"), {"language": "en", "next": reverse("invoices:dashboard")}
    )
    assert response.status_code == 302
    html = client.get(reverse("invoices:dashboard")).content.decode()
    assert '<html lang="en">' in html
    assert "Issue invoice" in html
    assert "Log out" in html


def test_it_edits_a_rejected_draft_and_resubmits_it(client: Client, dual_org, clerk, reviewer):
    draft_invoice = pending(clerk, dual_org)
    actions.do_reject_invoice(actor_for_user(reviewer), draft_invoice, "数量有误")
    client.force_login(clerk)
    page = client.get(reverse("invoices:edit", kwargs={"uid": draft_invoice.uid}))
    assert page.status_code == 200
    assert "笔记本电脑" in page.content.decode()
    data = {key: value for key, value in page.context["entry"].form.data.items()}
    data |= {"intent": "submit", "lines-0-amount": "250.00"}
    response = client.post(reverse("invoices:edit", kwargs={"uid": draft_invoice.uid}), data)
    assert response.status_code == 302
    draft_invoice.refresh_from_db()
    assert draft_invoice.status == InvoiceStatus.PENDING_REVIEW
    assert draft_invoice.total_with_tax == Decimal("282.50")


def test_it_refuses_to_edit_an_issued_invoice_or_another_organisations_draft(
    client: Client, org_a, clerk, outsider
):
    issued = issue(clerk, org_a)
    client.force_login(clerk)
    assert client.get(reverse("invoices:edit", kwargs={"uid": issued.uid})).status_code == 403
    own_draft = actions.do_create_draft(actor_for_user(clerk), org_a, invoice_draft())
    client.force_login(outsider)
    assert client.get(reverse("invoices:edit", kwargs={"uid": own_draft.uid})).status_code == 404


def test_it_shows_chinese_to_an_english_browser_until_the_user_switches(client, clerk):
    client.force_login(clerk)
    page = client.get(reverse("invoices:dashboard"), headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="zh-hans">' in page.content.decode()
