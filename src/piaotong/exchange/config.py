"""Exchange settings, read from Django settings first and the environment second.

The names (to be declared in settings.py; until then the environment is read directly):

- `PIAOTONG_NODE_ROLE`: "hub" or "regional" (default: hub for region 00, else regional);
- `PIAOTONG_NATS_URL`: the NATS server(s) of the exchange, comma-separated (default: none, the
  node runs alone and the outbox simply waits);
- `PIAOTONG_HUB_KEY_ID`: the hub's signing key id that regional nodes trust (default: the
  first hub key seen);
- `PIAOTONG_NATS_REPLICAS`: stream replicas (1 on a single server, 3 on a production cluster);
- `PIAOTONG_RELAY_POLL_SECONDS`: the relay's poll fallback (default 0.2, at most 1; after a cycle that published, the relay polls again after 50 ms);
- `PIAOTONG_SYNC_LAG_ALERT_SECONDS` / `PIAOTONG_OUTBOX_AGE_ALERT_SECONDS`: alert thresholds
  (default 60 / 300).
"""

from __future__ import annotations

import os

from django.conf import settings


def setting(name: str, default: str = "") -> str:
    value = getattr(settings, name, None)
    if value is None or value == "":
        value = os.environ.get(name, default)
    return str(value)


def number(name: str, default: float) -> float:
    raw = setting(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
