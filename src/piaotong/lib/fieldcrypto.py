"""Field encryption at rest (字段加密): AES-256-GCM tokens under a keyring of named keys.

Terms: a field key (字段密钥) is 32 random bytes with a key id (密钥编号) the operator chooses;
a keyring (密钥环) is an ordered list of field keys whose first is the current key: new values
are encrypted under it, and every key in the ring decrypts. A token (密文) is the text stored
in the column::

    pt1:<key id>:<base64url(nonce || ciphertext || tag)>

The context (上下文), normally the column's name, is authenticated with the value (associated
data), so a token copied into another column, or with its key id edited, does not decrypt.
A keyring is written as ``kid1:base64key,kid2:base64key``, current key first.

>>> ring = Keyring.parse("new:" + "B" * 43 + "=,old:" + "A" * 43 + "=")
>>> ring
Keyring(current='new', key_ids=('new', 'old'))
>>> token = ring.encrypt("6222 0200 1234 5678", context="accounts.organisation.bank_account")
>>> token.startswith("pt1:new:")
True
>>> ring.decrypt(token, context="accounts.organisation.bank_account")
'6222 0200 1234 5678'
>>> ring.decrypt(token, context="invoices.invoice.buyer_email")
Traceback (most recent call last):
...
piaotong.lib.fieldcrypto.TamperedTokenError: the encrypted value does not decrypt for invoices.invoice.buyer_email: it was altered, or copied from another column; refusing it
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pt1:"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # random 96-bit nonces: far below the 2**32 messages a key may take
KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class FieldCryptoError(ValueError):
    """A keyring or token problem; the message says what was wrong and how to fix it."""


class KeyringError(FieldCryptoError):
    """The keyring text is malformed."""


class UnknownKeyError(FieldCryptoError):
    """A token was encrypted under a key that is not in the keyring."""


class TamperedTokenError(FieldCryptoError):
    """A token is malformed, altered, or belongs to another context."""


@dataclass(frozen=True)
class FieldKey:
    """One named key. Invariant: `secret` is 32 bytes and never appears in a repr."""

    key_id: str
    secret: bytes = field(repr=False)


def generate_key_line(key_id: str) -> str:
    """A new key as one keyring entry, ``<key id>:<base64url of 32 random bytes>``.

    >>> line = generate_key_line("k2")
    >>> Keyring.parse(line).current_id
    'k2'
    """
    _check_key_id(key_id, "the new key")
    return f"{key_id}:{base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()}"


def is_token(value: str) -> bool:
    """Whether a stored value is a token rather than plaintext.

    >>> is_token("pt1:k1:AAAA"), is_token("13800000000")
    (True, False)
    """
    return value.startswith(PREFIX)


def token_key_id(token: str) -> str:
    """The key id a token was encrypted under.

    >>> token_key_id("pt1:k1:AAAA")
    'k1'
    """
    parts = token.split(":")
    if len(parts) != 3 or parts[0] + ":" != PREFIX:
        raise TamperedTokenError(f"not an encrypted value (expected {PREFIX}<key id>:<data>)")
    return parts[1]


class Keyring:
    """Field keys by id; the first is current. `source` names where the keys came from."""

    def __init__(self, keys: Sequence[FieldKey], source: str = "the keyring") -> None:
        if not keys:
            raise KeyringError(f"{source} holds no key: give at least one <key id>:<base64 key>")
        self.source = source
        self._keys: dict[str, FieldKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise KeyringError(f"{source} lists key id {key.key_id!r} twice")
            self._keys[key.key_id] = key
        self.current = keys[0]

    @classmethod
    def parse(cls, text: str, source: str = "the keyring") -> Keyring:
        """Keys from ``kid1:base64key,kid2:base64key`` (standard or URL-safe base64)."""
        entries = [entry.strip() for entry in text.split(",") if entry.strip()]
        return cls([_parse_entry(entry, source) for entry in entries], source)

    @property
    def current_id(self) -> str:
        return self.current.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id!r}, key_ids={self.key_ids!r})"

    def encrypt(self, plaintext: str, context: str) -> str:
        """A fresh token for `plaintext` under the current key (random nonce every time)."""
        nonce = os.urandom(NONCE_BYTES)
        aead = AESGCM(self.current.secret)
        sealed = aead.encrypt(nonce, plaintext.encode(), _associated(self.current_id, context))
        return f"{PREFIX}{self.current_id}:{_b64encode(nonce + sealed)}"

    def decrypt(self, token: str, context: str) -> str:
        """The plaintext of `token`, which must have been encrypted for `context`."""
        key_id = token_key_id(token)
        key = self._keys.get(key_id)
        if key is None:
            raise UnknownKeyError(
                f"the encrypted value in {context} needs field key id {key_id!r}, which is not "
                f"in {self.source} (it has {', '.join(self.key_ids)}): add that key"
            )
        data = token.split(":")[2]
        raw = _b64decode(data)
        # Only the canonical encoding is accepted: base64 has spare bits in its last character.
        if raw is None or len(raw) < NONCE_BYTES + 16 or _b64encode(raw) != data:
            raise _tampered(context)
        try:
            plain = AESGCM(key.secret).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(key_id, context)
            )
        except InvalidTag:
            raise _tampered(context) from None
        return plain.decode()

    def is_current(self, token: str) -> bool:
        """Whether `token` is under the current key, so rotation may leave it alone."""
        return is_token(token) and token_key_id(token) == self.current_id


def _associated(key_id: str, context: str) -> bytes:
    # The key id is bound too: editing it to name another key must not yield a valid token.
    return f"{PREFIX}{key_id}:{context}".encode()


def _tampered(context: str) -> TamperedTokenError:
    return TamperedTokenError(
        f"the encrypted value does not decrypt for {context}: it was altered, or copied from "
        "another column; refusing it"
    )


def _check_key_id(key_id: str, where: str) -> None:
    if not KEY_ID.fullmatch(key_id):
        raise KeyringError(
            f"{where}: key id {key_id!r} must be 1-32 letters, digits, '_', '.' or '-'"
        )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64decode(text: str) -> bytes | None:
    padded = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error:
        return None


def _parse_entry(entry: str, source: str) -> FieldKey:
    key_id, colon, text = entry.partition(":")
    if not colon:
        raise KeyringError(
            f"{source}: each key is <key id>:<base64 key>, separated by commas; "
            "generate one with `piaotong fieldkeys generate`"
        )
    _check_key_id(key_id.strip(), source)
    secret = _b64decode(text.strip())
    if secret is None or len(secret) != KEY_BYTES:
        raise KeyringError(
            f"{source}: key {key_id.strip()!r} must be base64 of {KEY_BYTES} bytes; "
            "generate one with `piaotong fieldkeys generate`"
        )
    return FieldKey(key_id.strip(), secret)
