"""Delivery (交付) to the buyer: email over real SMTP (a local aiosmtpd server) with retries while
the server is down, and the phone channel's one-time download codes."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from email.message import Message
from io import StringIO
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from piaotong.accounts.access import actor_for_user
from piaotong.accounts.models import User
from piaotong.invoices.models import Invoice
from piaotong.ledger.models import AuditEntry
from piaotong.lib.errors import RuleViolation
from piaotong.verification import delivery
from piaotong.verification.choices import DeliveryChannel, DeliveryStatus
from piaotong.verification.models import Delivery, DownloadCode
from piaotong.verification.sms import LogSmsBackend

pytestmark = pytest.mark.django_db
BUYER_MAIL = "finance@buyer.example.com"
BUYER_PHONE = "13800138000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port, self.inbox = port, Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(settings: Any, media_root: Any) -> Iterator[SmtpServer]:
    """Mail settings pointing at a local port; the server is started by the test."""
    server = SmtpServer(free_port())
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 5
    settings.PIAOTONG_DELIVERY_FROM = "invoices@seller.example.com"
    yield server
    server.stop()


@pytest.fixture
def sms(settings: Any) -> list[tuple[str, str]]:
    settings.PIAOTONG_SMS_BACKEND = "piaotong.verification.sms.LogSmsBackend"
    LogSmsBackend.sent.clear()
    return LogSmsBackend.sent


def request(clerk: User, invoice: Invoice, channel: str, address: str, **kw: Any) -> Delivery:
    return delivery.do_request_delivery(
        actor_for_user(clerk), invoice, channel, address, kw.get("formats", ["pdf", "xml"])
    )


def requested(capture: Any, *args: Any, **kw: Any) -> Delivery:
    """Request a delivery and run what it left for after commit: its first attempt.

    Only that callback is run, not the ones it registers in turn (the signing key's registry
    mark would outlive the test's rollback and hide the key from later tests).
    """
    with capture() as callbacks:
        made = request(*args, **kw)
    assert len(callbacks) == 1
    callbacks[0]()
    made.refresh_from_db()
    return made


def test_it_emails_the_chosen_files_to_the_buyer(
    smtp: SmtpServer, clerk: User, invoice: Invoice, django_capture_on_commit_callbacks: Any
) -> None:
    smtp.start()
    sent = requested(
        django_capture_on_commit_callbacks, clerk, invoice, DeliveryChannel.EMAIL, BUYER_MAIL
    )
    assert sent.status == DeliveryStatus.SENT and sent.attempts == 1
    [message] = smtp.inbox.messages
    assert message["To"] == BUYER_MAIL
    assert invoice.number and invoice.number in message["Subject"]
    attachments = {part.get_filename(): part for part in message.walk() if part.get_filename()}
    assert set(attachments) == {f"{invoice.number}.pdf", f"{invoice.number}.xml"}
    pdf = attachments[f"{invoice.number}.pdf"].get_payload(decode=True)
    xml = attachments[f"{invoice.number}.xml"].get_payload(decode=True)
    assert pdf.startswith(b"%PDF-") and invoice.number.encode() in xml
    assert list(sent.log.values_list("ok", flat=True)) == [True]


def test_it_retries_while_the_mail_server_is_down_then_delivers(
    smtp: SmtpServer, clerk: User, invoice: Invoice, django_capture_on_commit_callbacks: Any
) -> None:
    pending = requested(
        django_capture_on_commit_callbacks,
        clerk,
        invoice,
        DeliveryChannel.EMAIL,
        BUYER_MAIL,
        formats=["ofd"],
    )
    assert pending.status == DeliveryStatus.PENDING and pending.attempts == 1
    assert "Connection" in pending.last_error or "refused" in pending.last_error.lower()
    assert pending.next_attempt_at and pending.next_attempt_at > timezone.now() + timedelta(
        seconds=50
    )
    # Not due yet: nothing is tried.
    assert delivery.process_due() == (0, 0)
    later = timezone.now() + timedelta(minutes=2)
    assert delivery.process_due(later) == (0, 1)  # still down: 2nd failure, longer wait
    pending.refresh_from_db()
    assert pending.next_attempt_at and pending.next_attempt_at > later + timedelta(minutes=4)
    smtp.start()
    assert delivery.process_due(later + timedelta(minutes=10)) == (1, 0)
    pending.refresh_from_db()
    assert pending.status == DeliveryStatus.SENT and pending.attempts == 3
    assert [a.ok for a in pending.log.all()] == [False, False, True]
    [message] = smtp.inbox.messages
    assert [p.get_filename() for p in message.walk() if p.get_filename()] == [
        f"{invoice.number}.ofd"
    ]
    assert AuditEntry.objects.filter(action="invoice.delivery_sent").count() == 1


def test_the_command_sends_due_deliveries(smtp: SmtpServer, clerk: User, invoice: Invoice) -> None:
    queued = request(clerk, invoice, DeliveryChannel.EMAIL, BUYER_MAIL)  # on_commit never ran
    smtp.start()
    out = StringIO()
    call_command("deliver", "--retry", stdout=out)
    assert "1 sent" in out.getvalue()
    queued.refresh_from_db()
    assert queued.status == DeliveryStatus.SENT
    assert len(smtp.inbox.messages) == 1


def test_it_gives_up_after_the_configured_attempts(
    smtp: SmtpServer, clerk: User, invoice: Invoice, settings: Any
) -> None:
    settings.PIAOTONG_DELIVERY_MAX_ATTEMPTS = 2
    doomed = request(clerk, invoice, DeliveryChannel.EMAIL, BUYER_MAIL)
    moment = timezone.now()
    for step in range(3):
        delivery.process_due(moment + timedelta(days=step))
    doomed.refresh_from_db()
    assert doomed.status == DeliveryStatus.FAILED and doomed.attempts == 2
    assert AuditEntry.objects.filter(action="invoice.delivery_failed").count() == 1


def test_it_stores_the_address_encrypted(clerk: User, invoice: Invoice) -> None:
    from django.db import connection

    saved = request(clerk, invoice, DeliveryChannel.EMAIL, BUYER_MAIL)
    with connection.cursor() as cursor:
        cursor.execute("SELECT address FROM verification_delivery WHERE id = %s", [saved.pk])
        raw = cursor.fetchone()[0]
    assert BUYER_MAIL not in raw
    assert Delivery.objects.get(pk=saved.pk).address == BUYER_MAIL


def test_it_checks_the_address(clerk: User, invoice: Invoice) -> None:
    with pytest.raises(RuleViolation) as caught:
        request(clerk, invoice, DeliveryChannel.EMAIL, "not-an-address")
    assert caught.value.code == "email_format"
    with pytest.raises(RuleViolation) as caught:
        request(clerk, invoice, DeliveryChannel.SMS, "12345")
    assert caught.value.code == "phone_format"
    assert not Delivery.objects.exists()


def test_only_the_sellers_deliverers_may_deliver(
    auditor: User, outsider: User, invoice: Invoice
) -> None:
    from django.core.exceptions import PermissionDenied

    for user in (auditor, outsider):  # A's auditor; B's clerk (the buyer's side)
        with pytest.raises(PermissionDenied):
            request(user, invoice, DeliveryChannel.EMAIL, BUYER_MAIL)


# --- The phone channel -----------------------------------------------------------------------


def code_in(text: str) -> str:
    return text.split("/verify/d/", 1)[1].split()[0]


def sms_delivery(
    clerk: User, invoice: Invoice, capture: Any, sms: list[tuple[str, str]]
) -> tuple[Delivery, str]:
    sent = requested(capture, clerk, invoice, DeliveryChannel.SMS, "+86 138-0013-8000")
    [(phone, text)] = sms
    assert phone == BUYER_PHONE
    return sent, code_in(text)


def test_it_texts_a_one_time_link_and_stores_only_its_hash(
    sms: list[tuple[str, str]],
    clerk: User,
    invoice: Invoice,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent, code = sms_delivery(clerk, invoice, django_capture_on_commit_callbacks, sms)
    sent.refresh_from_db()
    assert sent.status == DeliveryStatus.SENT
    stored = DownloadCode.objects.get()
    assert stored.code_hash == delivery.hash_code(code) and code not in stored.code_hash
    assert str(invoice.number) in sms[0][1]


def test_a_code_opens_one_download_only(
    sms: list[tuple[str, str]],
    clerk: User,
    invoice: Invoice,
    media_root: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _, code = sms_delivery(clerk, invoice, django_capture_on_commit_callbacks, sms)
    visitor = Client()
    url = reverse("verification:download", args=[code])
    page = visitor.get(url)
    assert page.status_code == 200 and str(invoice.number) in page.content.decode()
    assert visitor.get(url).status_code == 200  # looking does not spend the code
    got = visitor.post(url, {"format": "pdf"})
    assert got.status_code == 200 and got.content.startswith(b"%PDF-")
    assert got["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    again = visitor.post(url, {"format": "xml"})
    assert again.status_code == 410
    assert visitor.get(url).status_code == 410


def test_an_expired_code_opens_nothing(
    sms: list[tuple[str, str]],
    clerk: User,
    invoice: Invoice,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.PIAOTONG_DELIVERY_CODE_HOURS = 1
    _, code = sms_delivery(clerk, invoice, django_capture_on_commit_callbacks, sms)
    stored = DownloadCode.objects.get()
    assert stored.expires_at - stored.created_at == timedelta(hours=1)
    assert delivery.find_code(code) is not None
    assert not stored.is_usable(stored.created_at + timedelta(hours=1, seconds=1))
    DownloadCode.objects.filter(pk=stored.pk).update(expires_at=timezone.now())
    with pytest.raises(RuleViolation) as caught:
        delivery.do_use_download_code(code, "pdf")
    assert caught.value.code == "code_unusable"


def test_a_new_code_revokes_the_old_one(
    sms: list[tuple[str, str]],
    clerk: User,
    invoice: Invoice,
    django_capture_on_commit_callbacks: Any,
) -> None:
    sent, first = sms_delivery(clerk, invoice, django_capture_on_commit_callbacks, sms)
    # A resend (here: the retry path of a delivery that is due again).
    Delivery.objects.filter(pk=sent.pk).update(
        status=DeliveryStatus.PENDING, next_attempt_at=timezone.now()
    )
    assert delivery.attempt_delivery(sent.pk) is True
    second = code_in(sms[-1][1])
    assert second != first
    assert delivery.find_code(first) is None and delivery.find_code(second) is not None


def test_an_unknown_code_is_refused(client: Client) -> None:
    response = client.get(reverse("verification:download", args=["nope"]))
    assert response.status_code == 410
    assert response["Cache-Control"] == "no-store"


# --- Pages ------------------------------------------------------------------------------------


def test_the_delivery_page_requests_and_logs(
    client: Client, clerk: User, invoice: Invoice, smtp: SmtpServer
) -> None:
    client.force_login(clerk)
    url = reverse("verification:deliver", args=[invoice.number])
    assert client.get(url).status_code == 200
    response = client.post(url, {"channel": "email", "address": BUYER_MAIL, "formats": ["pdf"]})
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert "fi***@buyer.example.com" in page and BUYER_MAIL not in page
    assert str(invoice.number) in client.get(reverse("verification:deliveries")).content.decode()


def test_the_delivery_page_is_404_across_organisations(
    client: Client, stranger: User, invoice: Invoice
) -> None:
    client.force_login(stranger)
    assert client.get(reverse("verification:deliver", args=[invoice.number])).status_code == 404


def test_the_buyer_sees_the_page_but_may_not_deliver(
    client: Client, outsider: User, invoice: Invoice
) -> None:
    client.force_login(outsider)
    url = reverse("verification:deliver", args=[invoice.number])
    assert client.get(url).status_code == 200
    assert client.post(url, {"channel": "email", "address": BUYER_MAIL}).status_code == 403


def test_the_command_says_what_to_do_without_retry() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--retry"):
        call_command("deliver")


def test_the_delivery_list_does_not_query_per_row(
    client: Client, clerk: User, invoice: Invoice, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        request(clerk, invoice, DeliveryChannel.EMAIL, f"buyer{n}@example.com")
    client.force_login(clerk)
    client.get(reverse("verification:deliveries"))  # warm caches (session, content types)
    with django_assert_max_num_queries(6):
        page = client.get(reverse("verification:deliveries")).content.decode()
    assert page.count("***@example.com") == 5
