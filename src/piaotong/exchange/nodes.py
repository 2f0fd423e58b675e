"""Node identity (节点身份) and the node registry (节点注册表) that the hub distributes.

Every node has an id, a role (hub or regional), the region it serves and a signing key. A node
announces itself (`piaotong.NodeAnnounced`, self-signed, proving it holds the key); the hub
records announcements in its registry and publishes the whole registry
(`piaotong.NodeRegistry`, serial-numbered, signed by the hub's key). Regional nodes accept a
registry only when the hub's signature verifies against the pinned hub key
(`PIAOTONG_HUB_KEY_ID`) or, without a pin, the hub key they saw first (trust on first use).
A node checks every received signature against the registry's key for the writer.

Settings (read with defaults, so a node without them runs alone): `PIAOTONG_NODE_ROLE`
("hub" or "regional"; default hub for region 00), `PIAOTONG_HUB_KEY_ID` (default: none).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from piaotong.accounts.access import Actor
from piaotong.exchange.choices import NodeRole, QuarantineReason
from piaotong.exchange.config import setting
from piaotong.exchange.memo import forget, remember
from piaotong.exchange.messages import Poison, RegistryMessage, envelope
from piaotong.exchange.models import Node, NodeKey, RegistryState
from piaotong.ledger.actions import record_audit
from piaotong.ledger.keys import signing_key
from piaotong.lib import signing
from piaotong.lib.canonical import canonical_json
from piaotong.lib.regions import NATIONAL_CODE

log = logging.getLogger(__name__)
ANNOUNCE_SCHEMA = "piaotong.NodeAnnounced"
REGISTRY_SCHEMA = "piaotong.NodeRegistry"


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    role: str
    region: str

    @property
    def is_hub(self) -> bool:
        return self.role == NodeRole.HUB


def node_role() -> str:
    default = NodeRole.HUB if settings.PIAOTONG_REGION == NATIONAL_CODE else NodeRole.REGIONAL
    role = setting("PIAOTONG_NODE_ROLE") or default
    if role not in NodeRole.values:
        raise ValueError(f"PIAOTONG_NODE_ROLE={role!r}: use hub or regional")
    return role


def this_node() -> NodeIdentity:
    return NodeIdentity(settings.PIAOTONG_NODE_ID, node_role(), settings.PIAOTONG_REGION)


def _bump_serial() -> None:
    state, _ = RegistryState.objects.select_for_update().get_or_create(pk=1)
    state.serial += 1
    state.save(update_fields=["serial", "updated_at"])


def registry_state() -> RegistryState:
    return RegistryState.objects.get_or_create(pk=1)[0]


def _upsert(node_id: str, role: str, region: str, keys: list[dict[str, Any]]) -> bool:
    """Record a node and its keys; True if anything changed. Keys are never deleted."""
    forget()  # a consumer's batch must not answer from the registry as it was
    node, created = Node.objects.get_or_create(
        node_id=node_id, defaults={"role": role, "region": region}
    )
    changed = created
    if (node.role, node.region) != (role, region):
        node.role, node.region = role, region
        node.save(update_fields=["role", "region", "updated_at"])
        changed = True
    for key in keys:
        public_key = base64.b64decode(key["public_key"])
        if signing.key_id(public_key) != key["key_id"]:
            raise Poison(QuarantineReason.BAD_SIGNATURE, f"key id {key['key_id']} does not match")
        row, created = NodeKey.objects.get_or_create(
            key_id=key["key_id"],
            defaults={
                "node": node,
                "algorithm": key.get("algorithm", signing.ALGORITHM),
                "public_key": public_key,
                "is_active": key.get("active", True),
            },
        )
        if not created and row.node_id != node.pk:
            raise Poison(
                QuarantineReason.CONFLICT, f"key {row.key_id} belongs to {row.node.node_id}"
            )
        if not created and row.is_active != key.get("active", True):
            row.is_active = key.get("active", True)
            row.save(update_fields=["is_active"])
            changed = True
        changed = changed or created
    return changed


def _key_entry(
    key_id: str, algorithm: str, public_key: bytes, active: bool = True
) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "algorithm": algorithm,
        "public_key": base64.b64encode(public_key).decode(),
        "active": active,
    }


def do_register_this_node() -> NodeIdentity:
    """Put this node and its current key in the local registry (at start-up of a worker).

    On the hub this is the registry itself, so a change bumps the serial to be published.
    """
    me = this_node()
    try:
        return _register(me)
    except IntegrityError:  # the relay and the consumer started together: the other one won
        return _register(me)


def _register(me: NodeIdentity) -> NodeIdentity:
    with transaction.atomic():
        key = signing_key()
        entry = _key_entry(key.key_id, key.algorithm, key.public_key)
        changed = _upsert(me.node_id, me.role, me.region, [entry])
        if changed and me.is_hub:
            _bump_serial()
        if changed:
            record_audit(Actor(), "node.registered", f"node:{me.node_id}", None, entry)
    return me


def _signed(schema: str, body: dict[str, Any]) -> dict[str, Any]:
    key = signing_key()
    return envelope(
        schema, 1, body=body, key_id=key.key_id, signature=key.sign(canonical_json(body))
    )


def announcement() -> dict[str, Any]:
    """This node's self-signed announcement (sent by its relay)."""
    me = this_node()
    key = signing_key()
    body = {
        "node_id": me.node_id,
        "role": me.role,
        "region": me.region,
        "keys": [_key_entry(key.key_id, key.algorithm, key.public_key)],
    }
    return _signed(ANNOUNCE_SCHEMA, body)


def registry_body(serial: int) -> dict[str, Any]:
    nodes = Node.objects.prefetch_related("keys").order_by("node_id")
    return {
        "serial": serial,
        "hub": this_node().node_id,
        "nodes": [
            {
                "node_id": node.node_id,
                "role": node.role,
                "region": node.region,
                "keys": [
                    _key_entry(k.key_id, k.algorithm, bytes(k.public_key), k.is_active)
                    for k in sorted(node.keys.all(), key=lambda k: k.key_id)
                ],
            }
            for node in nodes
        ],
    }


def registry_message(serial: int) -> dict[str, Any]:
    """The hub's signed registry."""
    return _signed(REGISTRY_SCHEMA, registry_body(serial))


def _verify(message: RegistryMessage, public_key: bytes) -> None:
    if not signing.verify(public_key, canonical_json(message.body), message.signature):
        raise Poison(QuarantineReason.BAD_SIGNATURE, f"{message.schema} signature does not verify")


def do_apply_announcement(message: RegistryMessage) -> bool:
    """On the hub: record a node's announcement; True if the registry changed."""
    body = message.body
    try:
        node_id, role, region = body["node_id"], body["role"], body["region"]
        key = next(k for k in body["keys"] if k["key_id"] == message.key_id)
        public_key = base64.b64decode(key["public_key"])
    except (KeyError, TypeError, StopIteration, ValueError) as exc:
        raise Poison(QuarantineReason.MALFORMED, f"bad announcement: {exc!r}") from None
    _verify(message, public_key)
    if role not in NodeRole.values:
        raise Poison(QuarantineReason.INVALID_CONTENT, f"unknown role {role!r}")
    existing = Node.objects.filter(node_id=node_id).first()
    if existing is not None and (existing.role, existing.region) != (role, region):
        raise Poison(
            QuarantineReason.CONFLICT,
            f"{node_id} is registered as {existing.role} of region {existing.region}",
        )
    with transaction.atomic():
        changed = _upsert(node_id, role, region, body["keys"])
        if changed:
            _bump_serial()
            record_audit(Actor(), "node.registered", f"node:{node_id}", None, {"region": region})
    return changed


def _hub_key(message: RegistryMessage, state: RegistryState) -> bytes:
    """The hub key to check a registry with: pinned, already trusted, or (first use) listed."""
    pinned = setting("PIAOTONG_HUB_KEY_ID") or state.hub_key_id
    if pinned and message.key_id != pinned:
        raise Poison(
            QuarantineReason.BAD_SIGNATURE,
            f"registry signed by key {message.key_id}, but the hub key is {pinned}",
        )
    for node in message.body.get("nodes", []):
        for key in node.get("keys", []):
            if key.get("key_id") == message.key_id and node.get("role") == NodeRole.HUB:
                return base64.b64decode(key["public_key"])
    raise Poison(QuarantineReason.BAD_SIGNATURE, "the registry's signing key is not a hub key")


def do_apply_registry(message: RegistryMessage) -> bool:
    """On a regional node: replace the registry by a newer one from the hub; True if applied."""
    with transaction.atomic():
        state, _ = RegistryState.objects.select_for_update().get_or_create(pk=1)
        _verify(message, _hub_key(message, state))
        serial = int(message.body.get("serial", 0))
        if serial <= state.serial:
            return False
        for node in message.body.get("nodes", []):
            _upsert(node["node_id"], node["role"], node["region"], node.get("keys", []))
        state.serial, state.hub_key_id = serial, message.key_id
        state.save(update_fields=["serial", "hub_key_id", "updated_at"])
        record_audit(Actor(), "node.registry_applied", "registry", None, {"serial": serial})
    return True


def node_of(node_id: str) -> Node | None:
    """The registered node, remembered for the rest of a consumer's batch (`memo`)."""
    return remember(
        "node",
        node_id,
        lambda: Node.objects.filter(node_id=node_id).first(),
        remember_missing=True,
    )


def key_of(key_id: str) -> NodeKey | None:
    """The registered key with its node, remembered for the rest of a consumer's batch."""
    return remember(
        "node_key",
        key_id,
        lambda: NodeKey.objects.select_related("node").filter(key_id=key_id).first(),
        remember_missing=True,
    )
