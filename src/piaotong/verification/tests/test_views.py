"""The public verification page (no login, CSRF protected, htmx or plain forms) and bulk
verification by spreadsheet or files, with its Excel export."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from openpyxl import Workbook, load_workbook

from piaotong.accounts.models import User
from piaotong.invoices.models import Invoice
from piaotong.lib.qr import compose_digital_qr
from piaotong.verification.choices import Outcome
from piaotong.verification.models import BulkVerification, VerificationLog

pytestmark = pytest.mark.django_db
URL = "/verify/"


def digital_post(invoice: Invoice, **changes: str) -> dict[str, str]:
    assert invoice.issue_date
    return {
        "mode": "digital",
        "d-number": invoice.number or "",
        "d-issue_date": invoice.issue_date.isoformat(),
        "d-total_with_tax": str(invoice.total_with_tax),
    } | {f"d-{k}": v for k, v in changes.items()}


@pytest.fixture
def english(client: Client) -> Client:
    client.cookies["django_language"] = "en"
    return client


def test_it_shows_the_forms_without_login(client: Client) -> None:
    page = client.get(URL).content.decode()
    assert 'name="d-number"' in page and 'name="l-code"' in page
    assert 'name="q-qr_text"' in page and 'name="u-file"' in page
    assert "csrfmiddlewaretoken" in page


def test_it_verifies_without_javascript(client: Client, invoice: Invoice) -> None:
    response = client.post(URL, digital_post(invoice))
    page = response.content.decode()
    assert response.status_code == 200
    assert "一致" in page and invoice.seller_name in page and "正常" in page
    assert "<html" in page  # the whole page, for browsers without htmx


def test_it_answers_htmx_with_the_form_area_only(client: Client, invoice: Invoice) -> None:
    response = client.post(URL, digital_post(invoice), headers={"HX-Request": "true"})
    page = response.content.decode()
    assert "<html" not in page and 'id="outcome"' in page and "一致" in page


def test_it_names_the_differing_field_in_english(english: Client, invoice: Invoice) -> None:
    page = english.post(URL, digital_post(invoice, total_with_tax="1000.00")).content.decode()
    assert "total including tax (价税合计)" in page
    assert "amount excluding tax" in page  # the pre-tax hint
    assert "1060.00" not in page


def test_it_puts_input_errors_beside_the_fields(english: Client) -> None:
    page = english.post(
        URL, {"mode": "digital", "d-number": "123", "d-issue_date": "x", "d-total_with_tax": ""}
    ).content.decode()
    assert "exactly 20" in page and "is not a date" in page and "Enter the amount" in page


def test_it_verifies_qr_text(client: Client, invoice: Invoice) -> None:
    assert invoice.number and invoice.issue_date
    text = compose_digital_qr("31", invoice.number, invoice.issue_date, invoice.total_with_tax)
    page = client.post(URL, {"mode": "qr", "q-qr_text": text}).content.decode()
    assert "一致" in page


def test_it_asks_for_a_file_when_none_was_uploaded(english: Client) -> None:
    page = english.post(URL, {"mode": "file"}).content.decode()
    assert "Choose a file" in page


def test_it_refuses_a_post_without_csrf_token(invoice: Invoice) -> None:
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(URL, digital_post(invoice)).status_code == 403
    assert not VerificationLog.objects.exists()


def test_it_answers_429_when_the_daily_limit_is_spent(
    client: Client, invoice: Invoice, settings: Any
) -> None:
    settings.PIAOTONG_VERIFY_DAILY_LIMIT = 1
    client.post(URL, digital_post(invoice))
    refused = client.post(URL, digital_post(invoice))
    assert refused.status_code == 429
    assert "超过当天查验次数" in refused.content.decode()
    assert int(refused["Retry-After"]) > 0


# --- Bulk ---------------------------------------------------------------------------------


def xlsx(rows: list[list[Any]], formula_cell: str = "") -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    if formula_cell:
        sheet[formula_cell] = "=1+1"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def upload(client: Client, name: str, data: bytes) -> Any:
    return client.post(reverse("verification:bulk"), {"spreadsheet": _file(name, data)})


def _file(name: str, data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def test_it_keeps_bulk_verification_for_logged_in_users(client: Client) -> None:
    response = client.get(reverse("verification:bulk"))
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_it_verifies_a_spreadsheet_and_reports_each_row(
    client: Client, clerk: User, invoice: Invoice
) -> None:
    client.force_login(clerk)
    assert invoice.issue_date
    day = invoice.issue_date
    data = xlsx(
        [
            ["发票号码", "开票日期", "价税合计"],
            [invoice.number, day, 1060],
            [invoice.number, day.isoformat(), "1,060.00"],  # duplicate
            ["26112000000000000999", day.isoformat(), 10],  # not found
            [26112000000000000999, day.isoformat(), 10],  # Excel cut it to 15 digits
            ["26112000000000000998", day.isoformat(), "abc"],  # text in a number column
            ["26112000000000000997", day.isoformat(), None],  # formula, below
        ],
        formula_cell="C7",
    )
    response = upload(client, "invoices.xlsx", data)
    saved = BulkVerification.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("verification:bulk_result", args=[saved.uid])
    outcomes = {row["row"]: row["outcome"] for row in saved.rows}
    assert outcomes == {
        2: Outcome.MATCH,
        3: Outcome.INVALID,
        4: Outcome.NOT_FOUND,
        5: Outcome.INVALID,
        6: Outcome.INVALID,
        7: Outcome.INVALID,
    }
    messages = {row["row"]: row["message_en"] for row in saved.rows}
    assert "already in row 2" in messages[3]
    assert "15 digits" in messages[5]
    assert "not an amount" in messages[6]
    assert "formula" in messages[7]
    page = client.get(response["Location"]).content.decode()
    assert str(invoice.number) in page and "查无此票" in page


def test_it_reads_a_gbk_csv(client: Client, clerk: User, invoice: Invoice) -> None:
    client.force_login(clerk)
    assert invoice.issue_date
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["发票号码", "开票日期", "价税合计"])
    writer.writerow([invoice.number, invoice.issue_date.strftime("%Y年%m月%d日"), "1060.00"])
    upload(client, "invoices.csv", text.getvalue().encode("gbk"))
    assert BulkVerification.objects.get().rows[0]["outcome"] == Outcome.MATCH


def test_it_refuses_a_spreadsheet_with_wrong_columns(
    client: Client, clerk: User, english: Client
) -> None:
    client.force_login(clerk)
    page = upload(client, "x.csv", "名称,金额\nfoo,1\n".encode()).content.decode()
    assert "The first row must name the columns" in page
    assert not BulkVerification.objects.exists()


def test_it_refuses_a_file_that_is_no_spreadsheet(client: Client, clerk: User) -> None:
    client.force_login(clerk)
    page = upload(client, "x.xlsx", b"PK\x03\x04 not really a zip").content.decode()
    assert "xlsx" in page and not BulkVerification.objects.exists()


def test_it_exports_the_results_safely_to_excel(
    client: Client, clerk: User, invoice: Invoice
) -> None:
    client.force_login(clerk)
    data = xlsx([["二维码"], ['=HYPERLINK("http://evil")']])
    # The formula cell is reported as an error row, not evaluated.
    upload(client, "qr.xlsx", data)
    saved = BulkVerification.objects.get()
    response = client.get(reverse("verification:bulk_export", args=[saved.uid]))
    content = b"".join(response.streaming_content)
    sheet = load_workbook(io.BytesIO(content), read_only=True).worksheets[0]
    values = [cell.value for row in sheet.iter_rows() for cell in row]
    assert all(not str(v).startswith("=") for v in values if v is not None)


def test_it_hides_a_bulk_result_from_other_users(
    client: Client, clerk: User, outsider: User, invoice: Invoice
) -> None:
    client.force_login(clerk)
    upload(client, "a.csv", f"发票号码,开票日期,价税合计\n{invoice.number},2020-01-01,1\n".encode())
    saved = BulkVerification.objects.get()
    client.force_login(outsider)
    assert client.get(reverse("verification:bulk_result", args=[saved.uid])).status_code == 404
    assert client.get(reverse("verification:bulk_export", args=[saved.uid])).status_code == 404


def test_it_verifies_many_files(client: Client, clerk: User, invoice: Invoice) -> None:
    from piaotong.documents.qrimage import qr_png

    client.force_login(clerk)
    assert invoice.number and invoice.issue_date
    text = compose_digital_qr("31", invoice.number, invoice.issue_date, invoice.total_with_tax)
    files = [_file("a.png", qr_png(text)), _file("b.txt", b"nothing")]
    client.post(reverse("verification:bulk"), {"files": files})
    rows = BulkVerification.objects.get().rows
    assert [row["outcome"] for row in rows] == [Outcome.MATCH, Outcome.INVALID]


def test_it_verifies_an_uploaded_qr_picture_on_the_page(client: Client, invoice: Invoice) -> None:
    from piaotong.documents.qrimage import qr_png

    assert invoice.number and invoice.issue_date
    text = compose_digital_qr("31", invoice.number, invoice.issue_date, invoice.total_with_tax)
    response = client.post(
        URL,
        {"mode": "file", "u-file": _file("qr.png", qr_png(text))},
        headers={"HX-Request": "true"},
    )
    assert "一致" in response.content.decode()
    assert VerificationLog.objects.get().input_kind == "qr_image"


def test_bulk_verification_needs_the_verify_role(client: Client, org_a: Any) -> None:
    from piaotong.accounts.choices import Role
    from piaotong.testing import make_user

    client.force_login(make_user("orgadmin", org_a, Role.ORG_ADMIN))
    assert client.get(reverse("verification:bulk")).status_code == 403


def test_it_says_why_an_unknown_number_was_not_found(english: Client, invoice: Invoice) -> None:
    """查无此票 carries the exchange's trace verdict on the page, not only in the API."""
    assert invoice.number
    unknown = invoice.number[:-6] + ("999999" if invoice.number[-6:] != "999999" else "999998")
    page = english.post(URL, digital_post(invoice, number=unknown)).content.decode()
    assert "Why it was not found" in page
    assert any(verdict in page for verdict in ("NOT_FOUND_ANYWHERE", "NEAR_MISS", "NOT_YET_SYNCED"))
