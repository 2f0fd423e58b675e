"""Verification actions (查验): check a claim, a QR text or an invoice file against the record.

Every check, whatever its answer, runs one transaction that counts it against the client's
limits and the invoice's daily limit and appends a `VerificationLog` row. Verification reads
invoices and changes none of them, so it writes no ledger event and no audit entry (the log is
its own record, and a public page must not serialise on the audit chain's head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.permissions import Action
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice
from piaotong.lib.errors import RuleViolation, RuleViolations
from piaotong.verification import limits
from piaotong.verification.choices import InputKind, Outcome, VerifyChannel
from piaotong.verification.conf import setting
from piaotong.verification.models import BulkVerification
from piaotong.verification.queries import Found, issued_invoice
from piaotong.verification.recording import Check, Recorded, record_check
from piaotong.verification.results import (
    Hint,
    VerificationResult,
    details_of,
    not_found_result,
    record_of,
    stored_values,
)
from piaotong.verification.rules import (
    Claim,
    DigitalClaim,
    LegacyClaim,
    compare_digital,
    compare_document,
    digital_claim,
    legacy_claim,
)


@dataclass(frozen=True)
class Requester:
    """Who asks: an actor when logged in or holding an API key (None on the public page), the
    client's IP address (stored only hashed), and the channel."""

    actor: Actor | None
    ip: str
    channel: VerifyChannel = VerifyChannel.WEB

    @property
    def principal(self) -> str:
        if self.actor is None or self.actor.principal == "system":
            return ""
        return self.actor.principal

    def is_party(self, invoice: Invoice) -> bool:
        """A member of the seller or the buyer organisation (any role)."""
        if self.actor is None:
            return False
        return invoice.seller_id in self.actor.grants or (
            invoice.buyer_id is not None and invoice.buyer_id in self.actor.grants
        )


# --- The one counting-and-logging step -------------------------------------------------------


def _count_and_log(
    requester: Requester,
    input_kind: InputKind,
    identifier: str,
    outcome: Outcome,
    invoice: Invoice | None = None,
    differing: tuple[str, ...] = (),
) -> Recorded:
    """Count the check for the client and the invoice, decide refusals, log; one transaction
    (`recording.record_check`)."""
    check = Check(
        client=limits.client_key(requester.actor, requester.ip),
        policy=limits.client_policy(requester.actor),
        bulk=requester.channel == VerifyChannel.BULK,
        daily_key="" if outcome == Outcome.INVALID else identifier,
        daily_limit=setting("PIAOTONG_VERIFY_DAILY_LIMIT"),
        outcome=outcome,
        principal=requester.principal,
        ip_hash=limits.hash_ip(requester.ip),
        channel=requester.channel,
        input_kind=input_kind,
        identifier=identifier,
        invoice_id=invoice.pk if invoice is not None else None,
        differing=",".join(differing),
    )
    return record_check(check, timezone.now())


def _refused(
    counted: Recorded, input_kind: InputKind, identifier: str
) -> VerificationResult | None:
    if counted.outcome not in (Outcome.DAILY_LIMIT, Outcome.THROTTLED):
        return None
    return VerificationResult(
        outcome=counted.outcome,
        input_kind=input_kind,
        identifier=identifier,
        daily_limit=setting("PIAOTONG_VERIFY_DAILY_LIMIT"),
        retry_after=counted.retry_after,
    )


def _checked_input(requester: Requester, input_kind: InputKind, build: Callable[[], Any]) -> Any:
    """Run an input check; a refused input is logged (and counted for the client) and re-raised."""
    try:
        return build()
    except (RuleViolation, RuleViolations):
        _count_and_log(requester, input_kind, "", Outcome.INVALID)
        raise


# --- Claims ------------------------------------------------------------------------------------


def find_invoice(claim: Claim) -> Found | None:
    """The issued invoice a claim names, with its lines, if this node holds it.

    Legacy invoices (税控发票) are never issued by this platform and not yet imported, so a
    legacy claim finds nothing here.
    """
    if isinstance(claim, LegacyClaim):
        return None
    return issued_invoice(claim.number)


def do_verify_invoice(
    requester: Requester, claim: Claim, input_kind: InputKind = InputKind.DIGITAL
) -> VerificationResult:
    """Verify a checked claim (数电 or legacy) against the record."""
    found = find_invoice(claim)
    limit = setting("PIAOTONG_VERIFY_DAILY_LIMIT")
    if found is None:
        counted = _count_and_log(requester, input_kind, claim.key, Outcome.NOT_FOUND)
        refused = _refused(counted, input_kind, claim.key)
        if refused is not None:
            return refused
        return not_found_result(
            claim, input_kind, claim.key, checks_today=counted.checks_today, daily_limit=limit
        )
    assert isinstance(claim, DigitalClaim)
    comparison = compare_digital(claim, record_of(found.invoice))
    outcome = Outcome.MATCH if comparison.matches else Outcome.MISMATCH
    counted = _count_and_log(
        requester, input_kind, claim.key, outcome, found.invoice, comparison.differing
    )
    refused = _refused(counted, input_kind, claim.key)
    if refused is not None:
        return refused
    return _found_result(
        requester,
        found,
        input_kind,
        comparison.differing,
        tuple(Hint(code) for code in comparison.hints),
        counted,
    )


def _found_result(
    requester: Requester,
    found: Found,
    input_kind: InputKind,
    differing: tuple[str, ...],
    hints: tuple[Hint, ...],
    counted: Recorded,
) -> VerificationResult:
    invoice = found.invoice
    is_party = requester.is_party(invoice)
    result = VerificationResult(
        outcome=counted.outcome,
        input_kind=input_kind,
        identifier=invoice.number or "",
        differing=differing,
        hints=hints,
        is_party=is_party,
        checks_today=counted.checks_today,
        daily_limit=setting("PIAOTONG_VERIFY_DAILY_LIMIT"),
    )
    if counted.outcome == Outcome.MATCH:
        result.invoice = details_of(invoice, found.lines)
        if invoice.status in (
            InvoiceStatus.PARTIALLY_RED_FLUSHED,
            InvoiceStatus.FULLY_RED_FLUSHED,
        ):
            result.hints = (*result.hints, Hint("red_letter"))
    elif is_party:
        # A party may see the invoice anyway; anyone else learns only which fields differ.
        result.stored = stored_values(record_of(invoice), differing)
    return result


def do_verify_digital(
    requester: Requester, number: object, issue_date: object, total_with_tax: object
) -> VerificationResult:
    """数电票: number, issue date and tax-inclusive total (价税合计), as typed."""
    claim = _checked_input(
        requester,
        InputKind.DIGITAL,
        lambda: digital_claim(
            number,
            issue_date,
            total_with_tax,
            timezone.localdate(),
            setting("PIAOTONG_VERIFY_YEARS"),
        ),
    )
    return do_verify_invoice(requester, claim, InputKind.DIGITAL)


def do_verify_legacy(
    requester: Requester,
    code: object,
    number: object,
    issue_date: object,
    amount: object = "",
    check_code: object = "",
) -> VerificationResult:
    """Legacy invoices: code, number, date, and the pre-tax amount or the check code's tail."""
    claim = _checked_input(
        requester,
        InputKind.LEGACY,
        lambda: legacy_claim(
            code,
            number,
            issue_date,
            amount,
            check_code,
            timezone.localdate(),
            setting("PIAOTONG_VERIFY_YEARS"),
        ),
    )
    return do_verify_invoice(requester, claim, InputKind.LEGACY)


def claim_from_qr(text: str) -> Claim:
    """The claim a QR text makes: 数电 QR codes carry the tax-inclusive total, legacy ones the
    amount excluding tax and (普票 kinds) the check code."""
    from piaotong.lib.qr import parse_qr

    data = parse_qr(text)
    today, years = timezone.localdate(), setting("PIAOTONG_VERIFY_YEARS")
    if data.is_digital:
        return digital_claim(data.number, data.issue_date, data.amount, today, years)
    return legacy_claim(
        data.invoice_code, data.number, data.issue_date, data.amount, data.check_code, today, years
    )


def do_verify_qr_text(
    requester: Requester, text: str, input_kind: InputKind = InputKind.QR_TEXT
) -> VerificationResult:
    claim = _checked_input(requester, input_kind, lambda: claim_from_qr(text))
    return do_verify_invoice(requester, claim, input_kind)


# --- Files -------------------------------------------------------------------------------------


def do_verify_file(requester: Requester, data: bytes, filename: str) -> VerificationResult:
    """Verify an uploaded file. A picture holding only the official QR code is verified like
    its QR text; a PDF, XML or OFD file (or a picture with our signed QR code) by its signature
    and by comparing every field it shows with the record, naming those that differ."""
    from piaotong.documents.reading import read_upload
    from piaotong.lib.qr import is_signed_payload

    read = _checked_input(requester, InputKind.FILE, lambda: read_upload(data, filename))
    if read.format == "image" and not read.key_id:
        official = [text for text in read.qr_texts if not is_signed_payload(text)]
        if official:
            return do_verify_qr_text(requester, official[0], InputKind.QR_IMAGE)
    number = (read.fields.get("number") or "").strip()
    if not number:
        _count_and_log(requester, InputKind.FILE, "", Outcome.INVALID)
        raise RuleViolation(
            "file",
            "no_invoice_data",
            _(
                "No invoice number was found in this file. Upload the invoice's PDF, XML or "
                "OFD file as delivered, or a sharp photo of its QR code."
            ),
        )
    return _verify_document(requester, read, number)


def tampered_fields(mismatches: list[str]) -> tuple[str, ...]:
    """What a file shows differently from what it says was signed, as field names: "qr.number"
    and "page.number" are the number, every line difference is "lines".

    >>> tampered_fields(["total_with_tax", "qr.total_with_tax", "lines.2.amount", "payload_hash"])
    ('total_with_tax', 'lines', 'content')
    """
    names: list[str] = []
    for raw in mismatches:
        name = raw.split(".", 1)[1] if raw.startswith(("qr.", "page.")) else raw
        if name.startswith("lines"):
            name = "lines"
        elif name in {"payload", "payload_hash", "signed_qr"}:
            name = "content"
        if name not in names:
            names.append(name)
    return tuple(names)


def _verify_document(requester: Requester, read: Any, number: str) -> VerificationResult:
    found = issued_invoice(number)
    signature = {True: "valid", False: "invalid", None: "absent"}[read.signature_valid]
    if found is None:
        counted = _count_and_log(requester, InputKind.FILE, number, Outcome.NOT_FOUND)
        refused = _refused(counted, InputKind.FILE, number)
        if refused is not None:
            return refused
        not_found = not_found_result(
            _document_claim(read.fields, number),
            InputKind.FILE,
            number,
            checks_today=counted.checks_today,
            daily_limit=setting("PIAOTONG_VERIFY_DAILY_LIMIT"),
        )
        return replace(not_found, signature=signature)
    invoice = found.invoice
    differing = list(compare_document(read.fields, record_of(invoice)))
    for name in tampered_fields(read.mismatches):
        if name not in differing:
            differing.append(name)
    hints: list[Hint] = []
    if read.signature_valid is False:
        differing.append("signature")
        hints.append(Hint("signature_invalid"))
    elif read.signature_valid is None:
        hints.append(Hint("signature_absent"))
    elif read.payload_hash != invoice.payload_hash and "content" not in differing:
        # Validly signed, yet not what was issued under this number.
        differing.append("content")
    outcome = Outcome.MISMATCH if differing else Outcome.MATCH
    counted = _count_and_log(requester, InputKind.FILE, number, outcome, invoice, tuple(differing))
    refused = _refused(counted, InputKind.FILE, number)
    if refused is not None:
        return refused
    result = _found_result(
        requester, found, InputKind.FILE, tuple(differing), tuple(hints), counted
    )
    return replace(result, signature=signature)


def _document_claim(fields: dict[str, str], number: str) -> Claim | None:
    try:
        return digital_claim(
            number,
            fields.get("issue_date", ""),
            fields.get("total_with_tax", ""),
            timezone.localdate(),
            setting("PIAOTONG_VERIFY_YEARS"),
        )
    except (RuleViolation, RuleViolations):
        return None


# --- Bulk --------------------------------------------------------------------------------------


def require_bulk_access(actor: Actor) -> None:
    if not actor.organisation_ids(Action.VERIFY_INVOICES):
        raise PermissionDenied(_("Your roles do not include bulk verification."))


def do_save_bulk_results(
    actor: Actor, source_name: str, rows: list[dict[str, Any]]
) -> BulkVerification:
    """Keep the results table of a bulk verification for its page and its Excel export."""
    require_bulk_access(actor)
    assert actor.user is not None
    with transaction.atomic():
        return BulkVerification.objects.create(
            created_by=actor.user, source_name=source_name[:200], rows=rows
        )
