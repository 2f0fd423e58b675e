"""The registration pages through URLs: an anonymous applicant, the Beijing bureau's officer who
reviews region 11, the Shanghai bureau's officer and A's clerk, who must learn nothing (404)."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.choices import OrganisationStatus
from piaotong.accounts.models import Organisation, QualificationDocument, User
from piaotong.accounts.registration import (
    DocumentUpload,
    do_apply_for_registration,
    do_reject_registration,
)
from piaotong.accounts.tests.test_registration import EXE, PDF, application
from piaotong.ledger.models import AuditEntry
from piaotong.testing import enable_totp

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english(client: Client) -> None:
    """Messages are asserted in English (the language cookie)."""
    client.cookies["django_language"] = "en"


@pytest.fixture
def pending(media_root) -> Organisation:
    return do_apply_for_registration(application(), [DocumentUpload("营业执照.pdf", PDF)])


def form_data(**files: SimpleUploadedFile) -> dict[str, object]:
    app = application("MA01WEB1")
    return {
        "name": app.name,
        "tax_id": app.tax_id,
        "taxpayer_kind": "general",
        "address": app.address,
        "phone": app.phone,
        "username": app.username,
        "full_name": app.full_name,
        "email": app.email,
        "password": app.password,
        "documents": list(files.values()),
    }


def as_user(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def test_it_applies_through_the_public_form(client, media_root):
    page = client.get(reverse("accounts:register"))
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    upload = SimpleUploadedFile("licence.pdf", PDF, content_type="application/pdf")
    response = client.post(reverse("accounts:register"), form_data(licence=upload))
    assert response.status_code == 302 and response.url == reverse("accounts:register_done")
    organisation = Organisation.objects.get(tax_id=application("MA01WEB1").tax_id)
    assert organisation.status == OrganisationStatus.PENDING
    document = QualificationDocument.objects.get(organisation=organisation)
    assert document.sha256 == hashlib.sha256(PDF).hexdigest()
    assert "under review" in client.get(response.url).text


def test_it_shows_a_refused_document_next_to_the_field(client, media_root):
    upload = SimpleUploadedFile("licence.pdf", EXE, content_type="application/pdf")
    response = client.post(reverse("accounts:register"), form_data(licence=upload))
    assert response.status_code == 200
    assert "licence.pdf is not a PDF, PNG or JPEG file" in response.text
    assert not Organisation.objects.exists()


def test_it_shows_the_applicant_the_pending_and_rejected_status(client, pending, tax_officer):
    applicant = User.objects.get(username=application().username)
    enable_totp(applicant)  # an organisation admin must have two-factor login
    dashboard = as_user(client, applicant).get(reverse("invoices:dashboard"))
    assert "awaits the tax bureau" in dashboard.text
    do_reject_registration(actor_for_user(tax_officer), pending, "营业执照照片不清晰")
    dashboard = client.get(reverse("invoices:dashboard"))
    assert "rejected the registration" in dashboard.text and "营业执照照片不清晰" in dashboard.text


def test_it_lists_pending_registrations_to_the_bureau_officer(
    client, pending, tax_officer, django_assert_max_num_queries
):
    as_user(client, tax_officer)
    with django_assert_max_num_queries(12):
        page = client.get(reverse("accounts:registrations"))
    assert pending.name in page.text
    assert reverse("accounts:registrations") in page.text  # the navigation link
    detail = client.get(reverse("accounts:registration_detail", args=[pending.pk]))
    assert detail.status_code == 200 and "营业执照.pdf" in detail.text


def test_it_hides_registrations_from_another_regions_officer(client, pending, shanghai_officer):
    as_user(client, shanghai_officer)
    assert pending.name not in client.get(reverse("accounts:registrations")).text
    document = QualificationDocument.objects.get()
    for url in (
        reverse("accounts:registration_detail", args=[pending.pk]),
        reverse("accounts:registration_document", args=[document.pk]),
    ):
        assert client.get(url).status_code == 404
    response = client.post(reverse("accounts:registration_approve", args=[pending.pk]))
    assert response.status_code == 404
    pending.refresh_from_db()
    assert pending.is_pending


def test_it_refuses_the_officer_pages_to_a_clerk(client, pending, clerk):
    as_user(client, clerk)
    assert client.get(reverse("accounts:registrations")).status_code == 403
    assert client.get(reverse("accounts:registration_detail", args=[pending.pk])).status_code == 404
    assert reverse("accounts:registrations") not in client.get(reverse("invoices:dashboard")).text


def test_it_approves_and_rejects_through_the_pages(client, pending, tax_officer, media_root):
    second = do_apply_for_registration(
        application("MA01REG2"), [DocumentUpload("a.pdf", PDF)], ip="198.51.100.1"
    )
    as_user(client, tax_officer)
    no_reason = client.post(reverse("accounts:registration_reject", args=[second.pk]), {"note": ""})
    assert no_reason.status_code == 302
    second.refresh_from_db()
    assert second.is_pending
    client.post(reverse("accounts:registration_reject", args=[second.pk]), {"note": "证照过期"})
    client.post(reverse("accounts:registration_approve", args=[pending.pk]), {"note": ""})
    second.refresh_from_db()
    pending.refresh_from_db()
    assert (second.status, second.review_note) == (OrganisationStatus.REJECTED, "证照过期")
    assert pending.status == OrganisationStatus.APPROVED and pending.reviewed_by == tax_officer


def test_it_sends_documents_as_attachments_only_to_the_reviewing_officer(
    client, pending, tax_officer
):
    document = QualificationDocument.objects.get()
    url = reverse("accounts:registration_document", args=[document.pk])
    applicant = User.objects.get(username=application().username)
    enable_totp(applicant)
    assert as_user(client, applicant).get(url).status_code == 404
    officer_client = Client()
    officer_client.cookies["django_language"] = "en"
    response = as_user(officer_client, tax_officer).get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("attachment;")
    assert (
        "filename*=utf-8''%E8%90%A5%E4%B8%9A%E6%89%A7%E7%85%A7.pdf"
        in response["Content-Disposition"]
    )
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == PDF
    entry = AuditEntry.objects.get(action="registration.document_downloaded")
    assert entry.organisation_id == pending.pk and entry.actor == f"user:{tax_officer.pk}"


def test_it_lets_a_rejected_applicant_apply_again_from_the_dashboard(
    client, pending, tax_officer, media_root
):
    do_reject_registration(actor_for_user(tax_officer), pending, "执照模糊")
    admin = pending.memberships.get().user
    enable_totp(admin)
    as_user(client, admin)
    assert (
        reverse("accounts:register_reapply", args=[pending.pk])
        in client.get(reverse("invoices:dashboard")).text
    )
    url = reverse("accounts:register_reapply", args=[pending.pk])
    assert "执照模糊" in client.get(url).text
    upload = SimpleUploadedFile("licence.pdf", PDF, content_type="application/pdf")
    response = client.post(url, {"applicant_note": "Clear scan attached", "documents": upload})
    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status == OrganisationStatus.PENDING
    as_user(client, tax_officer)
    detail = client.get(reverse("accounts:registration_detail", args=[pending.pk])).text
    assert "Clear scan attached" in detail and "执照模糊" in detail


def test_it_answers_404_to_reapplying_for_someone_elses_organisation(client, pending, clerk):
    as_user(client, clerk)
    assert client.get(reverse("accounts:register_reapply", args=[pending.pk])).status_code == 404
