"""Registration of an organisation (注册申请) and its review by the tax bureau (税务机关审核),
through the actions: an applicant, the Beijing bureau's officer, the Shanghai bureau's officer,
and a tax officer who sits in a taxpayer's organisation rather than a bureau."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import translation

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.actions import do_grant_role
from piaotong.accounts.choices import OrganisationStatus, Role
from piaotong.accounts.models import Membership, Organisation, QualificationDocument, User
from piaotong.accounts.registration import (
    MAX_DOCUMENT_BYTES,
    DocumentUpload,
    RegistrationApplication,
    do_apply_for_registration,
    do_approve_registration,
    do_reapply_for_registration,
    do_reject_registration,
)
from piaotong.invoices.actions import do_create_draft, do_issue_new_invoice
from piaotong.ledger.chain import audit_body, verify_records
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.lib.taxid import compose_uscc
from piaotong.testing import OPERATOR, draft, make_user

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 32


def application(org8: str = "MA01REG1", **overrides: str) -> RegistrationApplication:
    values = {
        "name": "北京新申请科技有限公司",
        "tax_id": compose_uscc("9", "1", "110108", org8),
        "taxpayer_kind": "general",
        "address": "北京市海淀区申请路 1 号",
        "phone": "010-60000001",
        "username": f"applicant-{org8.lower()}",
        "full_name": "申请人",
        "email": "applicant@example.com",
        "password": "correct-horse-battery",
    }
    return RegistrationApplication(**(values | overrides))


def apply(org8: str = "MA01REG1", documents: list[DocumentUpload] | None = None) -> Organisation:
    docs = documents or [DocumentUpload("营业执照.pdf", PDF), DocumentUpload("门头照.png", PNG)]
    return do_apply_for_registration(application(org8), docs, ip="203.0.113.9")


@pytest.fixture
def applicant_org(media_root: Path) -> Organisation:
    return apply()


def test_it_registers_a_pending_organisation_with_its_admin_and_documents(media_root):
    organisation = apply()
    assert (organisation.status, organisation.kind, organisation.region) == (
        OrganisationStatus.PENDING,
        "taxpayer",
        "11",
    )
    admin = User.objects.get(username="applicant-ma01reg1")
    assert admin.check_password("correct-horse-battery")
    assert list(
        Membership.objects.filter(organisation=organisation).values_list("user", "role")
    ) == [(admin.pk, Role.ORG_ADMIN)]
    documents = list(QualificationDocument.objects.filter(organisation=organisation))
    assert [(d.original_name, d.content_type, d.size) for d in documents] == [
        ("营业执照.pdf", "application/pdf", len(PDF)),
        ("门头照.png", "image/png", len(PNG)),
    ]
    for document, content in zip(documents, [PDF, PNG], strict=True):
        stored = Path(document.file.path)
        assert stored.is_relative_to(media_root) and stored.read_bytes() == content
        assert document.sha256 == hashlib.sha256(content).hexdigest()
        assert document.original_name not in str(document.file.name)  # random stored names
    actions = list(AuditEntry.objects.order_by("seq").values_list("action", flat=True))
    assert actions[-3:] == ["user.created", "role.granted", "registration.applied"]
    applied = AuditEntry.objects.get(action="registration.applied")
    assert applied.organisation_id == organisation.pk and applied.actor == "ip:203.0.113.9"
    assert [d["sha256"] for d in applied.details["documents"]] == [d.sha256 for d in documents]
    assert verify_records(AuditEntry.objects.order_by("seq"), audit_body) is None


def _refusal(error: pytest.ExceptionInfo[Exception]) -> dict[str, str]:
    exc = error.value
    violations = exc.violations if isinstance(exc, RuleViolations) else [exc]
    return {v.code: v.field for v in violations if isinstance(v, RuleViolation)}


def test_it_refuses_an_executable_renamed_to_pdf_and_keeps_nothing(media_root):
    with pytest.raises((RuleViolation, RuleViolations)) as refused:
        apply(documents=[DocumentUpload("营业执照.pdf", PDF), DocumentUpload("licence.pdf", EXE)])
    assert _refusal(refused) == {"document_type": "documents"}
    assert "licence.pdf" in str(refused.value)
    assert not Organisation.objects.exists() and not User.objects.exists()
    assert not QualificationDocument.objects.exists()
    assert not list(Path(media_root).rglob("*.*"))


def test_it_refuses_an_oversize_document(media_root):
    big = PDF + b"0" * MAX_DOCUMENT_BYTES
    with pytest.raises(RuleViolation) as refused:
        apply(documents=[DocumentUpload("scan.pdf", big)])
    assert refused.value.code == "document_too_large"
    assert not Organisation.objects.exists()


def test_it_refuses_no_documents_or_more_than_five(media_root):
    for documents in ([], [DocumentUpload(f"{i}.pdf", PDF) for i in range(6)]):
        with pytest.raises(RuleViolation) as refused:
            do_apply_for_registration(application(), documents)
        assert refused.value.code == "document_count"


def test_it_reports_a_bad_code_and_a_weak_password_at_once(media_root):
    bad = application(tax_id="91110108MA01REG1XX", password="12345678")
    with pytest.raises(RuleViolations) as refused:
        do_apply_for_registration(bad, [DocumentUpload("a.pdf", PDF)])
    fields = {v.field for v in refused.value.violations}
    assert {"tax_id", "password"} <= fields
    assert not Organisation.objects.exists()


def test_it_refuses_a_taxpayer_of_another_region(media_root):
    shanghai = application(tax_id=compose_uscc("9", "1", "310115", "MA1REG02"))
    with pytest.raises(RuleViolation) as refused:
        do_apply_for_registration(shanghai, [DocumentUpload("a.pdf", PDF)])
    assert refused.value.code == "region_not_served"


def test_it_throttles_applications_per_ip_address(media_root):
    for n in range(5):
        apply(org8=f"MA01RGT{n}")
    with pytest.raises(RuleViolation) as refused:
        apply(org8="MA01RGT9")
    assert refused.value.code == "too_many_applications"
    assert Organisation.objects.count() == 5


def test_it_refuses_drafting_and_issuing_for_a_pending_organisation(applicant_org, org_b):
    clerk = make_user("pending.clerk", applicant_org, Role.CLERK)
    actor = actor_for_user(clerk)
    for attempt in (do_create_draft, do_issue_new_invoice):
        with pytest.raises(RuleViolation) as refused:
            attempt(actor, applicant_org, draft(org_b))
        assert (refused.value.field, refused.value.code) == ("seller", "organisation_not_approved")
        with translation.override("en"):
            assert "awaits the tax bureau's review" in refused.value.text()


def test_it_lets_the_bureau_officer_approve_and_then_issuing_works(
    applicant_org, tax_officer, org_b
):
    approved = do_approve_registration(actor_for_user(tax_officer), applicant_org, "资料齐全")
    assert approved.status == OrganisationStatus.APPROVED
    assert (approved.reviewed_by, approved.review_note) == (tax_officer, "资料齐全")
    assert approved.reviewed_at is not None
    entry = AuditEntry.objects.get(action="registration.approved")
    assert (entry.organisation_id, entry.actor) == (applicant_org.pk, f"user:{tax_officer.pk}")
    clerk = make_user("new.clerk", approved, Role.CLERK)
    invoice = do_issue_new_invoice(actor_for_user(clerk), approved, draft(org_b))
    assert invoice.number is not None


def test_it_needs_a_reason_to_reject_and_issuing_then_names_it(applicant_org, tax_officer, org_b):
    officer = actor_for_user(tax_officer)
    with pytest.raises(RuleViolation) as refused:
        do_reject_registration(officer, applicant_org, "  ")
    assert refused.value.code == "required"
    rejected = do_reject_registration(officer, applicant_org, "营业执照照片不清晰")
    assert (rejected.status, rejected.review_note) == (
        OrganisationStatus.REJECTED,
        "营业执照照片不清晰",
    )
    assert AuditEntry.objects.filter(action="registration.rejected").count() == 1
    clerk = make_user("rejected.clerk", rejected, Role.CLERK)
    with pytest.raises(RuleViolation) as refused:
        do_issue_new_invoice(actor_for_user(clerk), rejected, draft(org_b))
    assert "营业执照照片不清晰" in refused.value.text()


def test_it_decides_a_registration_once(applicant_org, tax_officer):
    officer = actor_for_user(tax_officer)
    do_approve_registration(officer, applicant_org)
    with pytest.raises(RuleViolation) as refused:
        do_reject_registration(officer, applicant_org, "改主意了")
    assert refused.value.code == "already_reviewed"
    applicant_org.refresh_from_db()
    assert applicant_org.status == OrganisationStatus.APPROVED


def test_it_refuses_officers_without_authority_over_the_region(
    applicant_org, shanghai_officer, org_a
):
    taxpayer_side_officer = make_user("org.officer", org_a, Role.TAX_OFFICER)
    for user in (shanghai_officer, taxpayer_side_officer):
        with pytest.raises(PermissionDenied):
            do_approve_registration(actor_for_user(user), applicant_org)
    applicant_org.refresh_from_db()
    assert applicant_org.is_pending


def test_it_refuses_an_officer_reviewing_their_own_organisation(applicant_org, tax_officer):
    do_grant_role(OPERATOR, tax_officer, applicant_org, Role.AUDITOR)
    with pytest.raises(RuleViolation) as refused:
        do_approve_registration(actor_for_user(tax_officer), applicant_org)
    assert refused.value.code == "own_organisation"


# --- Applying again after a rejection -----------------------------------------------------


def _admin_of(organisation: Organisation) -> User:
    return Membership.objects.get(organisation=organisation, role=Role.ORG_ADMIN).user


def test_it_names_the_way_forward_when_a_code_is_already_taken(applicant_org, tax_officer):
    with pytest.raises(RuleViolation) as pending:
        do_apply_for_registration(
            application(username="someone-else"), [DocumentUpload("a.pdf", PDF)]
        )
    assert pending.value.code == "already_pending"
    do_reject_registration(actor_for_user(tax_officer), applicant_org, "执照过期")
    with pytest.raises(RuleViolation) as rejected:
        do_apply_for_registration(
            application(username="someone-else"), [DocumentUpload("a.pdf", PDF)]
        )
    assert rejected.value.code == "already_rejected"
    with translation.override("en"):
        assert "re-apply" in rejected.value.text()
    assert Organisation.objects.filter(tax_id=applicant_org.tax_id).count() == 1


def test_it_lets_the_rejected_admin_apply_again_and_keeps_the_history(
    applicant_org, tax_officer, org_b, media_root
):
    officer = actor_for_user(tax_officer)
    do_reject_registration(officer, applicant_org, "营业执照照片不清晰")
    admin = actor_for_user(_admin_of(applicant_org))
    again = do_reapply_for_registration(
        admin,
        applicant_org,
        [DocumentUpload("营业执照-清晰.pdf", PDF)],
        "重新拍摄了营业执照",
        ip="203.0.113.10",
    )
    assert (again.status, again.applications, again.applicant_note) == (
        OrganisationStatus.PENDING,
        2,
        "重新拍摄了营业执照",
    )
    assert (again.review_note, again.reviewed_by, again.reviewed_at) == ("", None, None)
    assert again.documents.count() == 3  # the two first documents stay on record
    entry = AuditEntry.objects.get(action="registration.reapplied")
    assert entry.details["rejection"]["note"] == "营业执照照片不清晰"
    assert entry.details["documents"][0]["name"] == "营业执照-清晰.pdf"
    again = do_approve_registration(officer, again)
    issued = do_issue_new_invoice(
        actor_for_user(make_user("again.clerk", again, Role.CLERK)), again, draft(org_b)
    )
    assert issued.number


def test_it_refuses_to_reapply_unless_rejected_or_without_a_note_or_documents(
    applicant_org, tax_officer, media_root
):
    admin = actor_for_user(_admin_of(applicant_org))
    with pytest.raises(RuleViolations) as refused:
        do_reapply_for_registration(admin, applicant_org, [], "  ")
    codes = {v.code for v in refused.value.violations}
    assert {"not_rejected", "required"} <= codes
    do_reject_registration(actor_for_user(tax_officer), applicant_org, "缺少文件")
    with pytest.raises(RuleViolation) as refused_file:
        do_reapply_for_registration(admin, applicant_org, [DocumentUpload("x.exe", EXE)], "补充")
    assert refused_file.value.field == "documents"
    applicant_org.refresh_from_db()
    assert applicant_org.status == OrganisationStatus.REJECTED
    assert applicant_org.documents.count() == 2


def test_it_lets_only_an_admin_of_the_organisation_apply_again(
    applicant_org, tax_officer, clerk, media_root
):
    do_reject_registration(actor_for_user(tax_officer), applicant_org, "缺少文件")
    stranger = actor_for_user(clerk)  # an admin of nothing here
    with pytest.raises(Organisation.DoesNotExist):
        do_reapply_for_registration(stranger, applicant_org, [DocumentUpload("a.pdf", PDF)], "补充")
    own_clerk = actor_for_user(make_user("applicant.clerk", applicant_org, Role.CLERK))
    with pytest.raises(Organisation.DoesNotExist):
        do_reapply_for_registration(
            own_clerk, applicant_org, [DocumentUpload("a.pdf", PDF)], "补充"
        )
