"""Delivery (交付) of issued invoices to their buyers: by email with the files attached, or by
SMS with a one-time download link.

- Requesting a delivery (`do_request_delivery`) writes the `Delivery` row and an audit entry in
  one transaction; the first sending attempt runs after commit.
- Each attempt claims the row (status sending, with a lease), sends outside any transaction (a
  slow mail server must not hold locks), then records a `DeliveryAttempt` (the delivery log).
  A failure schedules the next attempt with growing delays (`BACKOFF`); after
  `PIAOTONG_DELIVERY_MAX_ATTEMPTS` the delivery gives up. `piaotong deliver --retry` sends what
  is due.
- Email goes through Django's email settings (EMAIL_HOST, EMAIL_PORT, EMAIL_USE_TLS, ...; the
  sender is PIAOTONG_DELIVERY_FROM or DEFAULT_FROM_EMAIL).
- The phone channel (手机号交付) sends a link with a one-time code (一次性下载码): only its SHA-256 is
  stored, it expires after `PIAOTONG_DELIVERY_CODE_HOURS` and opens one download. Each attempt
  sends a fresh code and revokes the older unused ones, so no code is kept in plain text.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.permissions import Action
from piaotong.invoices.models import Invoice
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolation
from piaotong.verification.choices import DeliveryChannel, DeliveryStatus
from piaotong.verification.conf import setting
from piaotong.verification.models import Delivery, DeliveryAttempt, DownloadCode
from piaotong.verification.sms import SmsError, sms_backend

FORMATS = ("pdf", "ofd", "xml")
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "ofd": "application/ofd",
    "xml": "application/xml",
}
# Seconds to wait after the 1st, 2nd, ... failure; the last value repeats.
BACKOFF = (60, 300, 1800, 7200, 43200)
LEASE = timedelta(minutes=5)
SMTP_TIMEOUT = 20
_MOBILE = re.compile(r"1[3-9]\d{9}")
_SYSTEM = Actor()
logger = logging.getLogger(__name__)


class DocumentsUnavailable(Exception):
    """The documents app cannot render this invoice's files (yet)."""


# --- Requesting --------------------------------------------------------------------------------


def normalize_phone(text: str) -> str:
    """A mainland mobile number (手机号), without +86, spaces or dashes.

    >>> normalize_phone("+86 138-0013-8000")
    '13800138000'
    """
    digits = re.sub(r"[\s\-()]", "", text or "")
    digits = digits.removeprefix("+86").removeprefix("0086")
    if not _MOBILE.fullmatch(digits):
        raise RuleViolation(
            "address",
            "phone_format",
            _("%(given)s is not a mainland mobile number; type its 11 digits, e.g. 13800138000."),
            {"given": (text or "")[:30] or "—"},
        )
    return digits


def check_address(channel: str, address: str) -> str:
    if channel == DeliveryChannel.SMS:
        return normalize_phone(address)
    address = (address or "").strip()
    try:
        validate_email(address)
    except ValidationError:
        raise RuleViolation(
            "address",
            "email_format",
            _("%(given)s is not an email address; type it as name@example.com."),
            {"given": address[:60] or "—"},
        ) from None
    return address


def check_formats(formats: list[str]) -> list[str]:
    chosen = [f for f in FORMATS if f in formats]
    if not chosen or len(chosen) != len(set(formats)):
        raise RuleViolation(
            "formats",
            "formats_invalid",
            _("Choose at least one of the formats PDF, OFD and XML."),
        )
    return chosen


def do_request_delivery(
    actor: Actor,
    invoice: Invoice,
    channel: str,
    address: str,
    formats: list[str],
    link_base: str = "",
) -> Delivery:
    """Deliver an issued invoice to the buyer; the first attempt runs once this commits."""
    if not actor.can(Action.DELIVER_INVOICE, invoice.seller_id):
        raise PermissionDenied(_("Your role may not deliver this organisation's invoices."))
    if invoice.number is None:
        raise RuleViolation(
            "invoice", "not_issued", _("Only issued invoices can be delivered; issue it first.")
        )
    if channel not in DeliveryChannel.values:
        raise RuleViolation("channel", "channel_invalid", _("Choose email or mobile phone."))
    address = check_address(channel, address)
    chosen = list(FORMATS) if channel == DeliveryChannel.SMS else check_formats(formats)
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.create(
            invoice=invoice,
            channel=channel,
            address=address,
            formats=",".join(chosen),
            next_attempt_at=now,
            link_base=link_base[:200],
            requested_by=actor.user,
            requested_by_label=actor.label,
            created_at=now,
        )
        record_audit(
            actor,
            "invoice.delivery_requested",
            invoice.stream,
            invoice.seller_id,
            {
                "delivery": str(delivery.uid),
                "channel": channel,
                "formats": chosen,
                "address": delivery.masked_address,
            },
        )
        transaction.on_commit(lambda: attempt_delivery(delivery.pk))
    return delivery


# --- Sending -----------------------------------------------------------------------------------


def due_deliveries(now: datetime) -> Q:
    """Pending deliveries whose time has come, and sending ones whose sender's lease ran out."""
    return Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING, claimed_until__lt=now
    )


def _claim(delivery_id: int, now: datetime) -> Delivery | None:
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(due_deliveries(now), pk=delivery_id)
            .select_related("invoice")
            .first()
        )
        if delivery is None:
            return None
        delivery.status = DeliveryStatus.SENDING
        delivery.claimed_until = now + LEASE
        delivery.save(update_fields=["status", "claimed_until"])
    return delivery


def attempt_delivery(delivery_id: int, now: datetime | None = None) -> bool | None:
    """Try once to send a due delivery; None if it was not due (or another sender has it)."""
    moment = now or timezone.now()
    delivery = _claim(delivery_id, moment)
    if delivery is None:
        return None
    try:
        detail = _send(delivery, moment)
    except (OSError, SmsError, DocumentsUnavailable) as error:
        do_record_attempt(delivery, ok=False, detail=_describe(error), now=moment)
        return False
    except Exception as error:  # a defect must not stop the other deliveries; it is logged
        logger.exception("delivery %s failed unexpectedly", delivery.uid)
        do_record_attempt(delivery, ok=False, detail=_describe(error), now=moment)
        return False
    do_record_attempt(delivery, ok=True, detail=detail, now=moment)
    return True


def process_due(now: datetime | None = None, limit: int = 100) -> tuple[int, int]:
    """Send up to `limit` due deliveries; returns (sent, failed)."""
    moment = now or timezone.now()
    ids = list(
        Delivery.objects.filter(due_deliveries(moment))
        .order_by("next_attempt_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    sent = failed = 0
    for delivery_id in ids:
        outcome = attempt_delivery(delivery_id, moment)
        sent += outcome is True
        failed += outcome is False
    return sent, failed


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def next_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failure.

    >>> next_delay(1), next_delay(9)
    (datetime.timedelta(seconds=60), datetime.timedelta(seconds=43200))
    """
    return timedelta(seconds=BACKOFF[min(attempts, len(BACKOFF)) - 1])


def do_record_attempt(delivery: Delivery, *, ok: bool, detail: str, now: datetime) -> None:
    """Log one attempt and move the delivery on: sent, retried later, or given up."""
    with transaction.atomic():
        locked = Delivery.objects.select_for_update().get(pk=delivery.pk)
        DeliveryAttempt.objects.create(delivery=locked, attempted_at=now, ok=ok, detail=detail)
        locked.attempts += 1
        locked.claimed_until = None
        if ok:
            locked.status, locked.sent_at, locked.next_attempt_at = DeliveryStatus.SENT, now, None
            locked.last_error = ""
        elif locked.attempts >= setting("PIAOTONG_DELIVERY_MAX_ATTEMPTS"):
            locked.status, locked.next_attempt_at = DeliveryStatus.FAILED, None
            locked.last_error = detail
        else:
            locked.status = DeliveryStatus.PENDING
            locked.next_attempt_at = now + next_delay(locked.attempts)
            locked.last_error = detail
        locked.save()
        if locked.status != DeliveryStatus.PENDING:
            invoice = delivery.invoice
            record_audit(
                _SYSTEM,
                f"invoice.delivery_{locked.status}",
                invoice.stream,
                invoice.seller_id,
                {"delivery": str(locked.uid), "attempts": locked.attempts},
            )


def _send(delivery: Delivery, now: datetime) -> str:
    if delivery.channel == DeliveryChannel.EMAIL:
        return _send_email(delivery)
    return _send_sms(delivery, now)


def invoice_file(invoice: Invoice, fmt: str) -> bytes:
    """The bytes of one document of the invoice, rendered by the documents app if needed."""
    try:
        from piaotong.documents.actions import get_document
        from piaotong.documents.storage import read_bytes
    except ImportError as error:
        raise DocumentsUnavailable(str(error)) from None
    try:
        return read_bytes(get_document(invoice, fmt))
    except RuleViolation as error:
        raise DocumentsUnavailable(error.text()) from None
    except Exception as error:  # a rendering failure, recorded by the documents app
        raise DocumentsUnavailable(f"{type(error).__name__}: {error}") from None


def _send_email(delivery: Delivery) -> str:
    invoice = delivery.invoice
    seller = " ".join(invoice.seller_name.split())  # no line breaks in a mail header
    message = EmailMessage(
        subject=f"电子发票 Electronic invoice {invoice.number} · {seller}",
        body=_email_body(invoice),
        from_email=getattr(settings, "PIAOTONG_DELIVERY_FROM", None) or settings.DEFAULT_FROM_EMAIL,
        to=[delivery.address],
        connection=get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or SMTP_TIMEOUT),
    )
    for fmt in delivery.format_list:
        message.attach(f"{invoice.number}.{fmt}", invoice_file(invoice, fmt), CONTENT_TYPES[fmt])
    message.send(fail_silently=False)
    return f"email: {len(delivery.format_list)} attachment(s) to {delivery.masked_address}"


def _email_body(invoice: Invoice) -> str:
    return (
        f"{invoice.buyer_name}：\n\n"
        f"{invoice.seller_name} 向您开具了电子发票，号码 {invoice.number}，开票日期 "
        f"{invoice.issue_date}，价税合计 ¥{invoice.total_with_tax}。发票文件见附件。\n\n"
        f"{invoice.seller_name} issued electronic invoice {invoice.number} to you on "
        f"{invoice.issue_date}, total including tax CNY {invoice.total_with_tax}. "
        "The invoice files are attached.\n\n"
        "— 票通 Piaotong\n"
    )


def hash_code(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _send_sms(delivery: Delivery, now: datetime) -> str:
    code = secrets.token_urlsafe(24)
    hours = setting("PIAOTONG_DELIVERY_CODE_HOURS")
    with transaction.atomic():
        delivery.codes.filter(used_at=None, revoked=False).update(revoked=True)
        DownloadCode.objects.create(
            delivery=delivery,
            code_hash=hash_code(code),
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    invoice = delivery.invoice
    base = (
        delivery.link_base or getattr(settings, "PIAOTONG_BASE_URL", "") or "http://localhost:8000"
    )
    text = (
        f"【票通】{invoice.seller_name}向您开具电子发票{invoice.number}，价税合计"
        f"{invoice.total_with_tax}元。下载：{base.rstrip('/')}/verify/d/{code} "
        f"（{hours}小时内有效，仅可使用一次）"
    )
    message_id = sms_backend().send(delivery.address, text)
    return f"sms: link sent to {delivery.masked_address} ({message_id})"


# --- One-time downloads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    invoice: Invoice
    fmt: str
    data: bytes


def find_code(code: str) -> DownloadCode | None:
    """The code if it exists and can still be used; expired, used and revoked codes are None."""
    if not code or len(code) > 100:
        return None
    found = (
        DownloadCode.objects.filter(code_hash=hash_code(code))
        .select_related("delivery__invoice")
        .first()
    )
    if found is None or not found.is_usable(timezone.now()):
        return None
    return found


def do_use_download_code(code: str, fmt: str) -> Download:
    """Spend a one-time code on one file. The file is read before the code is spent, and the
    code is spent by a conditional UPDATE, so two concurrent uses cannot both succeed."""
    found = find_code(code)
    if found is None:
        raise code_refused()
    if fmt not in FORMATS:
        raise RuleViolation("format", "format_invalid", _("Choose PDF, OFD or XML."))
    invoice = found.delivery.invoice
    try:
        data = invoice_file(invoice, fmt)
    except DocumentsUnavailable:
        raise RuleViolation(
            "format",
            "document_unavailable",
            _("This file cannot be produced right now; the code was not used. Try again later."),
        ) from None
    now = timezone.now()
    with transaction.atomic():
        spent = DownloadCode.objects.filter(
            pk=found.pk, used_at=None, revoked=False, expires_at__gt=now
        ).update(used_at=now, used_format=fmt)
        if spent != 1:
            raise code_refused()
        record_audit(
            _SYSTEM,
            "invoice.downloaded_by_code",
            invoice.stream,
            invoice.seller_id,
            {"delivery": str(found.delivery.uid), "format": fmt},
        )
    return Download(invoice, fmt, data)


def code_refused() -> RuleViolation:
    return RuleViolation(
        "code",
        "code_unusable",
        _(
            "This download link is not valid: it has expired, was already used, or was "
            "replaced by a newer one. Ask the seller to send the invoice again."
        ),
    )
