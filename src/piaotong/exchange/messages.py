"""Exchange messages (交换报文): the versioned envelope every message travels in, and reading it.

Terms: the *envelope* (信封) is the outer JSON object; its version says how to read the rest.
The *schema* names what the message states (`piaotong.InvoiceIssued`) and the *schema version*
is the version of that payload's shape, as recorded in the ledger event (`schema_version`).

Envelope version 2 (current)::

    {"envelope": 2, "schema": "piaotong.InvoiceIssued", "schema_version": 1,
     "event": {"event_id", "stream", "writer", "seq", "kind", "schema_version", "payload",
               "occurred_at", "prev_hash", "hash"}}

Envelope version 1 is the bare event object (what the outbox published before envelopes
existed); it is upgraded on read by wrapping it. A newer envelope than this node knows is a
poison message with the reason `newer_schema`, never silently dropped.

Registry messages (`piaotong.NodeAnnounced`, `piaotong.NodeRegistry`) use the same envelope
with a `body` instead of an `event`, plus the signer's `key_id` and `signature`.

This module is pure: no database, no NATS.

>>> env = parse_message(b'{"envelope": 9, "schema": "piaotong.X", "schema_version": 1}', "s")
Traceback (most recent call last):
...
piaotong.exchange.messages.Poison: newer_schema: message envelope version 9; this node reads envelope versions up to 2
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from piaotong.exchange.choices import QuarantineReason
from piaotong.lib.canonical import canonical_json, chain_hash

ENVELOPE_VERSION = 2
SCHEMA_PREFIX = "piaotong."
SUBJECT_PREFIX = "piaotong.v1"
REGISTRY_ANNOUNCE_SUBJECT = f"{SUBJECT_PREFIX}.registry.announce"
REGISTRY_NODES_SUBJECT = f"{SUBJECT_PREFIX}.registry.nodes"
HEARTBEAT_PREFIX = "piaotong.heartbeat"  # core NATS, outside the stream
REGISTRY_SCHEMAS = frozenset({"piaotong.NodeAnnounced", "piaotong.NodeRegistry"})

# Headers beside Nats-Msg-Id, so tools and filters can read routing facts without the body.
SCHEMA_HEADER = "Piaotong-Schema"
VERSION_HEADER = "Piaotong-Schema-Version"
WRITER_HEADER = "Piaotong-Writer"

_EVENT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "event_id": str,
    "stream": str,
    "writer": str,
    "seq": int,
    "kind": str,
    "schema_version": int,
    "payload": dict,
    "occurred_at": str,
    "prev_hash": str,
    "hash": str,
}


class Poison(ValueError):
    """A message that will never apply as it is, with the reason and what was wrong."""

    def __init__(self, reason: QuarantineReason, detail: str, **known: Any) -> None:
        self.reason, self.detail, self.known = reason, detail, known
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True)
class Route:
    """The routing facts of a subject `piaotong.v1.<seller region>.<buyer region>.<kind>`."""

    seller_region: str
    buyer_region: str
    kind: str


def parse_subject(subject: str) -> Route | None:
    """
    >>> parse_subject("piaotong.v1.11.31.InvoiceIssued")
    Route(seller_region='11', buyer_region='31', kind='InvoiceIssued')
    >>> parse_subject("piaotong.v1.registry.nodes") is None
    True
    """
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:2]) != SUBJECT_PREFIX:
        return None
    seller, buyer, kind = parts[2:]
    if not (len(seller) == 2 and seller.isdigit()) or len(buyer) != 2:
        return None
    return Route(seller, "" if buyer == "xx" else buyer, kind)


@dataclass
class IncomingEvent:
    """A ledger event of another node, as received; `payload` may be upgraded for applying
    while `original_payload` and `schema_version` stay as the writer hashed them."""

    event_id: uuid.UUID
    stream: str
    writer: str
    seq: int
    kind: str
    schema_version: int
    payload: dict[str, Any]
    occurred_at: datetime
    prev_hash: str
    hash: str
    subject: str
    route: Route
    message: dict[str, Any]
    stream_seq: int | None = None
    original_payload: dict[str, Any] = field(default_factory=dict)

    @property
    def seller_region(self) -> str:
        return self.route.seller_region

    @property
    def buyer_region(self) -> str:
        return self.route.buyer_region

    # The canonical JSON of each object in the payload as the writer sent it, kept by
    # `hash_matches` for checks that need the same bytes again (an invoice's signature).
    canonical_parts: dict[str, bytes] = field(default_factory=dict)
    _hash_matches: bool | None = field(default=None, repr=False, compare=False)

    def hash_matches(self) -> bool:
        """The writer's hash covers exactly the body it sent (ledger.chain.event_body).

        Each object in the payload is canonicalised once and kept in `canonical_parts`; the
        body is hashed with those bytes in place (`orjson.Fragment`), which gives the same
        canonical JSON as the objects themselves. Computed once: the message it reads is the
        one received and never changes (an upgrade replaces `payload`, not the message).
        """
        if self._hash_matches is None:
            self._hash_matches = self._compute_hash_matches()
        return self._hash_matches

    def _compute_hash_matches(self) -> bool:
        body = {k: v for k, v in self.message["event"].items() if k not in {"prev_hash", "hash"}}
        payload = body.get("payload")
        if type(payload) is dict:
            parts = {k: canonical_json(v) for k, v in payload.items() if type(v) is dict}
            self.canonical_parts = parts
            body["payload"] = payload | {k: orjson.Fragment(v) for k, v in parts.items()}
        return chain_hash(self.prev_hash, body) == self.hash

    def canonical_part(self, name: str) -> bytes | None:
        """The writer's canonical bytes of `payload[name]`, if the payload is as sent (not
        upgraded) and `hash_matches` has run."""
        if self.payload is not self.original_payload:
            return None
        return self.canonical_parts.get(name)


@dataclass(frozen=True)
class RegistryMessage:
    schema: str
    schema_version: int
    body: dict[str, Any]
    key_id: str
    signature: str


def envelope(schema: str, schema_version: int, **content: Any) -> dict[str, Any]:
    return {"envelope": ENVELOPE_VERSION, "schema": schema, "schema_version": schema_version} | (
        content
    )


def event_envelope(event: dict[str, Any]) -> dict[str, Any]:
    """The message for a ledger event (its body with `prev_hash` and `hash`)."""
    return envelope(f"{SCHEMA_PREFIX}{event['kind']}", event["schema_version"], event=event)


def upgrade_envelope(message: dict[str, Any]) -> dict[str, Any]:
    """Bring an older envelope to the current version.

    >>> upgrade_envelope({"event_id": "e", "kind": "InvoiceIssued", "schema_version": 1})["schema"]
    'piaotong.InvoiceIssued'
    """
    version = message.get("envelope", 1)
    if version == 1 and "event_id" in message and "kind" in message:
        return event_envelope(message)
    return message


def _as_dict(data: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Poison(QuarantineReason.MALFORMED, f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise Poison(QuarantineReason.MALFORMED, "not a JSON object")
    return message


def _check_envelope(message: dict[str, Any]) -> None:
    version = message.get("envelope")
    if not isinstance(version, int):
        raise Poison(QuarantineReason.MALFORMED, "no envelope version")
    if version > ENVELOPE_VERSION:
        raise Poison(
            QuarantineReason.NEWER_SCHEMA,
            f"message envelope version {version}; this node reads envelope versions up to "
            f"{ENVELOPE_VERSION}",
        )
    schema = message.get("schema")
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_PREFIX):
        raise Poison(QuarantineReason.UNKNOWN_SCHEMA, f"schema {schema!r} is not ours")
    if not isinstance(message.get("schema_version"), int):
        raise Poison(QuarantineReason.MALFORMED, "no schema version")


def parse_message(data: bytes, subject: str) -> IncomingEvent | RegistryMessage:
    """Read a message: upgrade its envelope, check its shape and its subject, or raise Poison."""
    message = upgrade_envelope(_as_dict(data))
    _check_envelope(message)
    if message["schema"] in REGISTRY_SCHEMAS:
        return _registry_message(message)
    return _event(message, subject)


def _registry_message(message: dict[str, Any]) -> RegistryMessage:
    body, key_id, signature = message.get("body"), message.get("key_id"), message.get("signature")
    if not isinstance(body, dict) or not isinstance(key_id, str) or not isinstance(signature, str):
        raise Poison(QuarantineReason.MALFORMED, "a registry message needs body, key_id, signature")
    return RegistryMessage(message["schema"], message["schema_version"], body, key_id, signature)


def _event(message: dict[str, Any], subject: str) -> IncomingEvent:
    event = message.get("event")
    if not isinstance(event, dict):
        raise Poison(QuarantineReason.MALFORMED, "the message carries no event")
    known = {k: event.get(k) for k in ("event_id", "stream", "writer", "seq", "kind")}
    for name, kind in _EVENT_FIELDS.items():
        if not isinstance(event.get(name), kind) or isinstance(event.get(name), bool):
            raise Poison(QuarantineReason.MALFORMED, f"event field {name!r} missing or not {kind}")
    try:
        event_id = uuid.UUID(event["event_id"])
        occurred_at = datetime.fromisoformat(event["occurred_at"])
    except ValueError as exc:
        raise Poison(QuarantineReason.MALFORMED, f"bad event id or time: {exc}", **known) from None
    route = parse_subject(subject)
    if route is None or route.kind != event["kind"]:
        raise Poison(
            QuarantineReason.MALFORMED,
            f"subject {subject!r} does not route a {event['kind']} event",
            **known,
        )
    if (
        message["schema"] != f"{SCHEMA_PREFIX}{event['kind']}"
        or message["schema_version"] != event["schema_version"]
    ):
        raise Poison(QuarantineReason.MALFORMED, "envelope and event disagree on schema", **known)
    return IncomingEvent(
        event_id=event_id,
        stream=event["stream"],
        writer=event["writer"],
        seq=event["seq"],
        kind=event["kind"],
        schema_version=event["schema_version"],
        payload=event["payload"],
        original_payload=event["payload"],
        occurred_at=occurred_at,
        prev_hash=event["prev_hash"],
        hash=event["hash"],
        subject=subject,
        route=route,
        message=message,
    )


def dumps(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)
