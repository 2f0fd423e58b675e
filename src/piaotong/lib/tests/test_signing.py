"""Signatures: libsodium's check (used by `verify`) agrees with OpenSSL's (`cryptography`)."""

from __future__ import annotations

import base64

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from piaotong.lib import signing

KEY = signing.generate_private_key()
OTHER = signing.generate_private_key()
PUBLIC = signing.public_key_bytes(KEY)


def _openssl_verifies(public_key: bytes, data: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature)
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), flip=st.integers(min_value=0, max_value=63 * 8 + 7))
def test_it_agrees_with_openssl_on_valid_altered_and_foreign_signatures(
    data: bytes, flip: int
) -> None:
    good = signing.sign(KEY, data)
    raw = bytearray(base64.b64decode(good))
    raw[flip // 8] ^= 1 << (flip % 8)
    altered = base64.b64encode(bytes(raw)).decode()
    foreign = signing.sign(OTHER, data)
    for signature, expected in ((good, True), (altered, False), (foreign, False)):
        assert signing.verify(PUBLIC, data, signature) is expected
        assert _openssl_verifies(PUBLIC, data, signature) is expected
    if data:
        changed = bytes([data[0] ^ 1]) + data[1:]
        assert signing.verify(PUBLIC, changed, good) is False
        assert _openssl_verifies(PUBLIC, changed, good) is False


def test_it_refuses_signatures_and_keys_of_the_wrong_length_or_encoding() -> None:
    good = signing.sign(KEY, b"invoice")
    assert signing.verify(PUBLIC, b"invoice", good)
    short = base64.b64encode(base64.b64decode(good)[:63]).decode()
    long = base64.b64encode(base64.b64decode(good) + b"\0").decode()
    for signature in (short, long, "", "not base64!", good[:-4]):
        assert not signing.verify(PUBLIC, b"invoice", signature)
    for key in (PUBLIC[:31], PUBLIC + b"\0", b"", bytes(32)):
        assert not signing.verify(key, b"invoice", good)


def test_it_refuses_a_signature_moved_into_the_message() -> None:
    """libsodium checks signature+message as one buffer: the split must be the signature's."""
    good = base64.b64decode(signing.sign(KEY, b"invoice"))
    shifted = base64.b64encode(good[:60]).decode()
    assert not signing.verify(PUBLIC, good[60:] + b"invoice", shifted)
