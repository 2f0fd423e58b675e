"""Backup keys (备份密钥) and key ids: see the terms in piaotong.backup."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from piaotong.backup.reporting import BackupError

KEY_ENV = "PIAOTONG_BACKUP_KEY"


def generate_key() -> str:
    """A new backup key: base64 of 32 random bytes.

    >>> len(parse_key(generate_key()))
    32
    """
    return base64.b64encode(os.urandom(32)).decode()


def parse_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise BackupError(
            f"{KEY_ENV} must be base64 of 32 bytes: generate one with `piaotong backup --generate-key`"
        )
    return key


def key_from_env() -> bytes | None:
    """The backup key, read here rather than in settings: only backup and restore need it."""
    text = os.environ.get(KEY_ENV, "")
    return parse_key(text) if text.strip() else None


def key_id(key: bytes) -> bytes:
    """A one-way name for a key (HKDF with its own label, so it reveals nothing of file keys)."""
    return hkdf(key, 8, salt=None, info=b"piaotong backup key id")


def hkdf(key: bytes, length: int, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)
