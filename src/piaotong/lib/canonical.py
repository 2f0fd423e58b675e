"""Canonical JSON (规范化 JSON): the exact bytes that are hashed and signed.

Sorted keys, no whitespace, UTF-8 (not ASCII escapes), decimals as strings, datetimes as
ISO 8601 in UTC. Floats are refused: money is never a float, and a float's text form is not
stable across languages.

>>> from decimal import Decimal
>>> canonical_json({"b": Decimal("1.10"), "a": "北京"})
b'{"a":"\\xe5\\x8c\\x97\\xe4\\xba\\xac","b":"1.10"}'
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be part of canonical JSON")


_PLAIN = (str, int, bool, type(None), Decimal, UUID)
# The exact types of nearly every value, recognised by one set lookup before the isinstance
# chain below (which also admits their subclasses): canonical JSON is on the issuing hot path.
_PLAIN_TYPES = frozenset(_PLAIN)


def _normalise(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in _PLAIN_TYPES else _normalise(v)
            for k, v in value.items()
        }
    if kind is list:
        return [v if type(v) in _PLAIN_TYPES else _normalise(v) for v in value]
    if kind in _PLAIN_TYPES or isinstance(value, _PLAIN):
        return value
    if isinstance(value, float):
        raise TypeError("floats cannot be part of canonical JSON; use Decimal")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("naive datetimes cannot be part of canonical JSON")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): v if isinstance(v, _PLAIN) else _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(_normalise(value), default=_default, option=orjson.OPT_SORT_KEYS)


def sha256_hex(data: bytes) -> str:
    """
    >>> sha256_hex(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


def chain_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """The hash of one chained record: SHA-256 over the previous hash and the canonical body.

    >>> chain_hash("", {"a": 1}) == chain_hash("", {"a": 1})
    True
    >>> chain_hash("", {"a": 1}) == chain_hash("x", {"a": 1})
    False
    """
    return sha256_hex(prev_hash.encode() + b"\n" + canonical_json(body))
