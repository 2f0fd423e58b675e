"""This node's signing key: generated on first use, private half on disk, public half registered.

The private key file is created under an exclusive lock so two processes starting together
agree on one key.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction

from piaotong.ledger.models import SigningKey
from piaotong.lib import signing


@dataclass(frozen=True)
class NodeKey:
    key_id: str
    algorithm: str
    private_key: Ed25519PrivateKey

    def sign(self, data: bytes) -> str:
        return signing.sign(self.private_key, data)

    @property
    def public_key(self) -> bytes:
        return signing.public_key_bytes(self.private_key)


def _load_or_create_private_key() -> Ed25519PrivateKey:
    key_dir = settings.PIAOTONG_KEY_DIR
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = key_dir / f"{settings.PIAOTONG_NODE_ID}.ed25519.pem"
    with open(key_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            pem = signing.private_key_to_pem(signing.generate_private_key())
            path.touch(mode=0o600)
            path.write_bytes(pem)
        return signing.private_key_from_pem(path.read_bytes())


@lru_cache(maxsize=1)
def node_key() -> NodeKey:
    """The key, read from disk once per process."""
    private_key = _load_or_create_private_key()
    key_id = signing.key_id(signing.public_key_bytes(private_key))
    return NodeKey(key_id=key_id, algorithm=signing.ALGORITHM, private_key=private_key)


_registered: set[str] = set()


def signing_key() -> NodeKey:
    """The key to sign with, registered in the key table within the caller's transaction.

    The "registered" mark is set only after the registering transaction commits, so a rollback
    cannot leave a key that signs invoices but is missing from the registry.
    """
    key = node_key()
    if key.key_id in _registered:
        return key
    SigningKey.objects.get_or_create(
        key_id=key.key_id,
        defaults={
            "node_id": settings.PIAOTONG_NODE_ID,
            "public_key": key.public_key,
            "algorithm": key.algorithm,
        },
    )
    transaction.on_commit(lambda: _registered.add(key.key_id))
    return key
