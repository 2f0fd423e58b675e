"""Signatures (数字签名) over canonical invoice payloads, Ed25519 by default.

A key id (密钥标识) is the first 16 hex digits of the SHA-256 of the raw public key, so any
holder of the public key can recompute it.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "Ed25519"


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def private_key_to_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the key file does not hold an Ed25519 private key")
    return key


def sign(private_key: Ed25519PrivateKey, data: bytes) -> str:
    """Base64 signature of `data`.

    >>> key = generate_private_key()
    >>> verify(public_key_bytes(key), b"invoice", sign(key, b"invoice"))
    True
    >>> verify(public_key_bytes(key), b"invoice!", sign(key, b"invoice"))
    False
    """
    return base64.b64encode(private_key.sign(data)).decode()


def verify(public_key: bytes, data: bytes, signature: str) -> bool:
    try:
        _public_key(bytes(public_key)).verify(base64.b64decode(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


@lru_cache(maxsize=256)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    """Loaded once per key: a consumer checks thousands of signatures by the same few keys."""
    return Ed25519PublicKey.from_public_bytes(raw)
