"""Registration of taxpayers (单位注册) with qualification documents (资质证明), reviewed by the tax
authority (税务机关审核).

Terms: an application (注册申请) creates the applicant's login, the organisation in status
`pending` (待审核) with the applicant as its first admin, and stores the documents. A reviewing
officer holds the tax officer role (税务人员) in a tax bureau (税务机关) organisation and decides the
applications of taxpayers of the bureau's region, once: approved (已通过), or rejected (已驳回)
with a reason the applicant sees. Only an approved organisation drafts or issues invoices
(`invoices.actions`). Who may review what is decided in `accounts.access`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts import throttle
from piaotong.accounts.access import Actor, reviewing_regions
from piaotong.accounts.actions import Visitor, do_create_user, do_grant_role
from piaotong.accounts.choices import OrganisationKind, OrganisationStatus, Role
from piaotong.accounts.models import Membership, Organisation, QualificationDocument, User
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolation, RuleViolations, raise_all
from piaotong.lib.filetypes import EXTENSIONS, detect_document_type
from piaotong.lib.taxid import normalize

MAX_DOCUMENTS = 5
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
MAX_TEXT = 500
# Form field names of the application, by the model field a validation error names.
USER_FIELDS = {"first_name": "full_name", "username": "username", "email": "email"}


@dataclass(frozen=True)
class RegistrationApplication:
    """What the applicant typed: the organisation and its first admin's login."""

    name: str
    tax_id: str
    taxpayer_kind: str
    address: str
    phone: str
    username: str
    full_name: str
    email: str
    password: str


@dataclass(frozen=True)
class DocumentUpload:
    """An uploaded file as received: the name the browser sent and the bytes."""

    name: str
    content: bytes


@dataclass(frozen=True)
class CheckedDocument:
    name: str
    content: bytes
    content_type: str
    sha256: str


def _from_validation_error(error: ValidationError, field: str = "__all__") -> list[RuleViolation]:
    """The model's or the password validators' errors as rule violations, one per message."""
    if hasattr(error, "error_dict"):
        items = list(error.error_dict.items())
    else:
        items = [(field, error.error_list)]
    return [
        RuleViolation(name, str(item.code or "invalid"), " ".join(item.messages))
        for name, errors in items
        for item in errors
    ]


def display_name(name: str) -> str:
    """The uploaded file's own name without folders or control characters, for display only.

    >>> display_name("C:\\\\scans\\\\营业执照.pdf")
    '营业执照.pdf'
    """
    base = re.split(r"[\\\\/]", name)[-1]
    return re.sub(r"[\x00-\x1f\x7f]", "", base).strip()[:255] or "document"


def check_documents(uploads: Sequence[DocumentUpload]) -> list[CheckedDocument]:
    """The uploads with their detected type and digest; every problem raised at once."""
    if not 1 <= len(uploads) <= MAX_DOCUMENTS:
        raise RuleViolation(
            "documents",
            "document_count",
            _(
                "Attach from 1 to %(limit)s qualification documents (PDF, PNG or JPEG); %(count)s were attached."
            ),
            {"limit": MAX_DOCUMENTS, "count": len(uploads)},
        )
    checked, violations = [], []
    for upload in uploads:
        name = display_name(upload.name)
        content_type = detect_document_type(upload.content)
        if len(upload.content) > MAX_DOCUMENT_BYTES:
            violations.append(
                RuleViolation(
                    "documents",
                    "document_too_large",
                    _(
                        "%(name)s is larger than 10 MB; scan it at a lower resolution or split it into several files."
                    ),
                    {"name": name},
                )
            )
        elif content_type is None:
            violations.append(
                RuleViolation(
                    "documents",
                    "document_type",
                    _(
                        "%(name)s is not a PDF, PNG or JPEG file, whatever its name says; attach a scan or a photo in one of these formats."
                    ),
                    {"name": name},
                )
            )
        else:
            digest = hashlib.sha256(upload.content).hexdigest()
            checked.append(CheckedDocument(name, upload.content, content_type, digest))
    raise_all(violations)
    return checked


def _organisation_violations(organisation: Organisation) -> list[RuleViolation]:
    try:
        organisation.full_clean()
    except ValidationError as error:
        violations = _from_validation_error(error)
    else:
        violations = []
    if any(v.field == "region" for v in violations) and not any(
        v.field == "tax_id" for v in violations
    ):
        violations.append(
            RuleViolation(
                "tax_id",
                "uscc_region",
                _(
                    "The code's digits 3 and 4 name no province; check the unified social credit code on the business licence."
                ),
            )
        )
    violations = [v for v in violations if v.field != "region"]
    existing = _existing_registration(organisation.tax_id)
    if existing is not None:
        violations = [v for v in violations if v.field != "tax_id"] + [existing]
    if not violations and organisation.region != settings.PIAOTONG_REGION:
        violations.append(
            RuleViolation(
                "tax_id",
                "region_not_served",
                _(
                    "This platform node serves region %(node)s; a taxpayer of region %(region)s registers on its own region's node."
                ),
                {"node": settings.PIAOTONG_REGION, "region": organisation.region},
            )
        )
    return violations


def _existing_registration(tax_id: str) -> RuleViolation | None:
    """What to tell someone who applies with a code that is already registered or applied for.

    Registration status is public (it is on the business registry); who the admin is is not.
    """
    status = Organisation.objects.filter(tax_id=tax_id).values_list("status", flat=True).first()
    if status is None:
        return None
    if status == OrganisationStatus.REJECTED:
        message = _(
            "This code's earlier application was rejected. Log in with the admin account that applied and re-apply from the dashboard with corrected documents."
        )
    elif status == OrganisationStatus.PENDING:
        message = _(
            "This code already has an application awaiting the tax bureau's review; wait for the decision."
        )
    else:
        message = _("This organisation is already registered; ask its admin to invite you instead.")
    return RuleViolation("tax_id", f"already_{status}", message)


def _user_violations(application: RegistrationApplication) -> list[RuleViolation]:
    user = User(
        username=application.username.strip(),
        first_name=application.full_name.strip(),
        email=application.email.strip(),
    )
    violations = []
    try:
        validate_password(application.password, user)
    except ValidationError as error:
        violations += _from_validation_error(error, "password")
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as error:
        violations += [
            v.renamed(USER_FIELDS.get(v.field, v.field)) for v in _from_validation_error(error)
        ]
    return violations


def _refuse_if_throttled(ip: str, now: datetime) -> None:
    until = throttle.registration_locked_until(ip, now)
    if until is not None:
        raise RuleViolation(
            "applicant",
            "too_many_applications",
            _(
                "Too many registration applications came from your network address; try again after %(time)s."
            ),
            {"time": timezone.localtime(until).strftime("%H:%M")},
        )


def do_apply_for_registration(
    application: RegistrationApplication,
    documents: Sequence[DocumentUpload],
    *,
    ip: str = "",
    now: datetime | None = None,
) -> Organisation:
    """Apply to register an organisation: its admin's login, the pending organisation, the
    documents, all in one transaction. It cannot issue until a tax officer approves it."""
    now = now or timezone.now()
    _refuse_if_throttled(ip, now)
    tax_id = normalize(application.tax_id)
    organisation = Organisation(
        name=application.name.strip(),
        tax_id=tax_id,
        region=tax_id[2:4],
        taxpayer_kind=application.taxpayer_kind,
        address=application.address.strip(),
        phone=application.phone.strip(),
        kind=OrganisationKind.TAXPAYER,
        status=OrganisationStatus.PENDING,
    )
    violations = _organisation_violations(organisation) + _user_violations(application)
    try:
        checked = check_documents(documents)
    except RuleViolation as one:
        violations.append(one)
    except RuleViolations as many:
        violations += many.violations
    raise_all(violations)
    return _store_application(Visitor(ip=ip), application, organisation, checked, now)


def _store_application(
    visitor: Visitor,
    application: RegistrationApplication,
    organisation: Organisation,
    checked: list[CheckedDocument],
    now: datetime,
) -> Organisation:
    stored: list[str] = []
    try:
        with transaction.atomic():
            user = do_create_user(
                visitor,
                application.username,
                application.password,
                full_name=application.full_name,
                email=application.email,
            )
            organisation.save()
            # The applicant is the organisation's first admin: nobody exists yet who could
            # approve a role request, so this is the bootstrap grant.
            do_grant_role(visitor, user, organisation, Role.ORG_ADMIN)
            documents = [_document(organisation, user, item, stored) for item in checked]
            QualificationDocument.objects.bulk_create(documents)
            throttle.record_registration(visitor.ip, now)
            record_audit(
                visitor,
                "registration.applied",
                f"organisation:{organisation.tax_id}",
                organisation.pk,
                {
                    "name": organisation.name,
                    "admin": user.username,
                    "documents": [
                        {"name": d.original_name, "sha256": d.sha256, "type": d.content_type}
                        for d in documents
                    ],
                },
            )
    except BaseException:
        # The rows are rolled back; files written before the failure must not outlive them.
        for name in stored:
            default_storage.delete(name)
        raise
    return organisation


def _document(
    organisation: Organisation, user: User, item: CheckedDocument, stored: list[str]
) -> QualificationDocument:
    document = QualificationDocument(
        organisation=organisation,
        original_name=item.name,
        sha256=item.sha256,
        size=len(item.content),
        content_type=item.content_type,
        uploaded_by=user,
    )
    document.file.save(
        f"document.{EXTENSIONS[item.content_type]}", ContentFile(item.content), save=False
    )
    stored.append(str(document.file.name))
    return document


def _applying_admin(actor: Actor, organisation: Organisation) -> None:
    if (
        actor.user is None
        or not Membership.objects.filter(
            user=actor.user, organisation=organisation, role=Role.ORG_ADMIN
        ).exists()
    ):
        # Not one of its admins: as far as this user is concerned it does not exist.
        raise Organisation.DoesNotExist(f"{actor.label} administers no {organisation.tax_id}")


def do_reapply_for_registration(
    actor: Actor,
    organisation: Organisation,
    documents: Sequence[DocumentUpload],
    note: str,
    *,
    ip: str = "",
    now: datetime | None = None,
) -> Organisation:
    """Apply again after a rejection: new documents and a note on what changed, by an admin of
    the organisation. Earlier documents and decisions stay on record (documents, audit chain)."""
    now = now or timezone.now()
    _applying_admin(actor, organisation)
    _refuse_if_throttled(ip, now)
    violations: list[RuleViolation] = []
    organisation = Organisation.objects.get(pk=organisation.pk)
    if not organisation.is_rejected:
        violations.append(
            RuleViolation(
                "status",
                "not_rejected",
                _("Only a rejected registration can be applied for again; this one is %(status)s."),
                {"status": organisation.get_status_display()},
            )
        )
    if not note.strip():
        violations.append(
            RuleViolation(
                "applicant_note",
                "required",
                _("Say what you corrected since the rejection, so the tax officer can check it."),
            )
        )
    elif len(note.strip()) > MAX_TEXT:
        violations.append(
            RuleViolation(
                "applicant_note",
                "too_long",
                _("Keep it to %(limit)s characters or fewer; it has %(length)s."),
                {"limit": MAX_TEXT, "length": len(note.strip())},
            )
        )
    try:
        checked = check_documents(documents)
    except RuleViolation as one:
        violations.append(one)
        checked = []
    except RuleViolations as many:
        violations += many.violations
        checked = []
    raise_all(violations)
    stored: list[str] = []
    try:
        with transaction.atomic():
            locked = Organisation.objects.select_for_update().get(pk=organisation.pk)
            if not locked.is_rejected:  # decided or re-applied meanwhile
                raise RuleViolation(
                    "status",
                    "not_rejected",
                    _(
                        "Only a rejected registration can be applied for again; this one is %(status)s."
                    ),
                    {"status": locked.get_status_display()},
                )
            previous = {
                "note": locked.review_note,
                "reviewed_at": locked.reviewed_at.isoformat() if locked.reviewed_at else "",
            }
            locked.status = OrganisationStatus.PENDING
            locked.applicant_note = note.strip()
            locked.applications += 1
            locked.review_note, locked.reviewed_by, locked.reviewed_at = "", None, None
            locked.save(
                update_fields=[
                    "status",
                    "applicant_note",
                    "applications",
                    "review_note",
                    "reviewed_by",
                    "reviewed_at",
                ]
            )
            assert actor.user is not None
            rows = [_document(locked, actor.user, item, stored) for item in checked]
            QualificationDocument.objects.bulk_create(rows)
            throttle.record_registration(ip, now)
            record_audit(
                actor,
                "registration.reapplied",
                f"organisation:{locked.tax_id}",
                locked.pk,
                {
                    "application": locked.applications,
                    "note": locked.applicant_note,
                    "rejection": previous,
                    "documents": [
                        {"name": d.original_name, "sha256": d.sha256, "type": d.content_type}
                        for d in rows
                    ],
                },
            )
    except BaseException:
        for name in stored:
            default_storage.delete(name)
        raise
    return locked


# --- Review by the tax authority ----------------------------------------------------------


def _reviewer(actor: Actor, organisation: Organisation) -> User:
    """The officer behind the actor, if their bureau covers the organisation's region."""
    if (
        actor.user is None
        or organisation.kind != OrganisationKind.TAXPAYER
        or organisation.region not in reviewing_regions(actor)
    ):
        raise PermissionDenied(f"{actor.label} may not review {organisation.tax_id}")
    if Membership.objects.filter(user=actor.user, organisation=organisation).exists():
        raise RuleViolation(
            "reviewed_by",
            "own_organisation",
            _(
                "Nobody reviews the registration of an organisation they belong to; another tax officer must decide it."
            ),
        )
    return actor.user


def _locked_pending(organisation: Organisation) -> Organisation:
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    if not organisation.is_pending:
        raise RuleViolation(
            "status",
            "already_reviewed",
            _("This registration is already %(status)s; a decision is final."),
            {"status": organisation.get_status_display()},
        )
    return organisation


def _too_long(note: str) -> None:
    if len(note.strip()) > MAX_TEXT:
        raise RuleViolation(
            "review_note",
            "too_long",
            _("Keep it to %(limit)s characters or fewer; it has %(length)s."),
            {"limit": MAX_TEXT, "length": len(note.strip())},
        )


def _decide(
    actor: Actor,
    organisation: Organisation,
    officer: User,
    status: OrganisationStatus,
    note: str,
) -> Organisation:
    with transaction.atomic():
        organisation = _locked_pending(organisation)
        organisation.status, organisation.review_note = status, note.strip()
        organisation.reviewed_by, organisation.reviewed_at = officer, timezone.now()
        organisation.save(update_fields=["status", "review_note", "reviewed_by", "reviewed_at"])
        record_audit(
            actor,
            f"registration.{status.value}",
            f"organisation:{organisation.tax_id}",
            organisation.pk,
            {"note": organisation.review_note},
        )
    return organisation


def do_approve_registration(
    actor: Actor, organisation: Organisation, note: str = ""
) -> Organisation:
    """Approve a pending registration: from now on the organisation may issue invoices."""
    officer = _reviewer(actor, organisation)
    _too_long(note)
    return _decide(actor, organisation, officer, OrganisationStatus.APPROVED, note)


def do_reject_registration(actor: Actor, organisation: Organisation, reason: str) -> Organisation:
    """Reject a pending registration with the reason the applicant will read."""
    officer = _reviewer(actor, organisation)
    if not reason.strip():
        raise RuleViolation(
            "review_note",
            "required",
            _("Say why the registration is rejected, so the applicant knows what to correct."),
        )
    _too_long(reason)
    return _decide(actor, organisation, officer, OrganisationStatus.REJECTED, reason)


def do_record_document_download(actor: Actor, document: QualificationDocument) -> None:
    """Reading an applicant's documents is audited, like every export."""
    with transaction.atomic():
        record_audit(
            actor,
            "registration.document_downloaded",
            f"organisation:{document.organisation.tax_id}",
            document.organisation_id,
            {"document": document.pk, "sha256": document.sha256},
        )
