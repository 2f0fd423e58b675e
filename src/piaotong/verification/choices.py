"""Kinds of verification input (查验方式), outcomes (查验结果), and delivery channels and states."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class InputKind(models.TextChoices):
    DIGITAL = "digital", _("数电 number, date and total")
    LEGACY = "legacy", _("Legacy code, number, date and amount or check code")
    QR_TEXT = "qr_text", _("QR code text")
    QR_IMAGE = "qr_image", _("QR code image")
    FILE = "file", _("Invoice file (PDF, XML, OFD)")


class VerifyChannel(models.TextChoices):
    WEB = "web", _("Web page")
    API = "api", _("API")
    BULK = "bulk", _("Bulk verification")


class Outcome(models.TextChoices):
    MATCH = "match", _("Match (一致)")
    MISMATCH = "mismatch", _("Mismatch (不一致)")
    NOT_FOUND = "not_found", _("Not found (查无此票)")
    DAILY_LIMIT = "daily_limit", _("Refused: daily limit of this invoice (超过当天查验次数)")
    THROTTLED = "throttled", _("Refused: too many checks from this client")
    INVALID = "invalid", _("Refused: invalid input")


# Outcomes that tell a guesser something about an identifier that does not match: the ones
# that count as misses for the client limit.
MISSES = frozenset({Outcome.NOT_FOUND, Outcome.MISMATCH})


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", _("Email")
    SMS = "sms", _("Mobile phone (download link by SMS)")


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Waiting to be sent")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed (gave up)")
