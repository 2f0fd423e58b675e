"""SMS gateways (短信网关) for the phone channel of delivery: pluggable, log-only by default.

`PIAOTONG_SMS_BACKEND` (a setting or environment variable) names a class with a
`send(phone: str, text: str) -> str` method that raises `SmsError` on failure and returns the
gateway's message id. The default, `LogSmsBackend`, sends nothing: it keeps the message in
`LogSmsBackend.sent` (for development and tests) and writes it to the log with the download
code masked, so a node left on the default never puts live links into its logs.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from typing import ClassVar, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger("piaotong.sms")
DEFAULT_BACKEND = "piaotong.verification.sms.LogSmsBackend"
_CODE = re.compile(r"/d/[A-Za-z0-9_-]+")


class SmsError(Exception):
    """The gateway refused or could not be reached; the delivery is retried later."""


class SmsBackend(Protocol):
    def send(self, phone: str, text: str) -> str: ...


class LogSmsBackend:
    """Records messages instead of sending them."""

    sent: ClassVar[list[tuple[str, str]]] = []

    def send(self, phone: str, text: str) -> str:
        self.sent.append((phone, text))
        logger.info("SMS to %s****%s: %s", phone[:3], phone[-4:], _CODE.sub("/d/****", text))
        return f"log-{uuid.uuid4().hex[:12]}"


def sms_backend() -> SmsBackend:
    path = getattr(settings, "PIAOTONG_SMS_BACKEND", None) or os.environ.get(
        "PIAOTONG_SMS_BACKEND", DEFAULT_BACKEND
    )
    backend: SmsBackend = import_string(path)()
    return backend
