"""A local multi-node cluster (本地多节点): one nats-server and one node per region, as processes.

`piaotong cluster up --regions 00,11,31` starts NATS (JetStream, store in `<dir>/nats`) and, per
region, a node with its own SQLite database and var directory under `<dir>/<region>/`: it is
migrated and demo-seeded, then its web server (gunicorn through `piaotong serve`), relay and
consumer are started, and on the hub the sync alert watcher (`piaotong sync_alerts --every`).
Pids and ports go to `<dir>/state.json`; `cluster down` stops everything;
`cluster status` shows processes and each node's sync summary; `cluster stop|start --region R
--process consumer` stops or starts one process (to watch the trace and the catch-up).

Each node process gets its identity from the environment: DATABASE_URL, PIAOTONG_VAR_DIR,
PIAOTONG_REGION, PIAOTONG_NODE_ID, PIAOTONG_NODE_ROLE, PIAOTONG_NATS_URL, PIAOTONG_HUB_KEY_ID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from piaotong.exchange.natsserver import LocalNats, free_port, wait_for_port

NODE_PROCESSES = ("web", "relay", "consumer")
PROCESSES = (*NODE_PROCESSES, "alerts")  # the hub's
HUB_REGION = "00"
ALERT_POLL_SECONDS = 30


def processes_of(region: str) -> tuple[str, ...]:
    """The processes of a node: every node serves, relays and consumes; the hub also watches
    the sync alerts (lag, outbox age) and emails its tax officers.

    >>> processes_of("11"), processes_of("00")[-1]
    (('web', 'relay', 'consumer'), 'alerts')
    """
    return PROCESSES if region == HUB_REGION else NODE_PROCESSES


@dataclass
class NodeProcesses:
    region: str
    node_id: str
    role: str
    port: int
    var_dir: str
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@dataclass
class ClusterState:
    directory: str
    nats_pid: int
    nats_port: int
    nats_monitor_port: int
    nodes: list[NodeProcesses]

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def node(self, region: str) -> NodeProcesses:
        found = next((n for n in self.nodes if n.region == region), None)
        if found is None:
            raise KeyError(f"no node of region {region} in this cluster")
        return found

    def save(self) -> None:
        path = Path(self.directory) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> ClusterState | None:
        path = directory / "state.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["nodes"] = [NodeProcesses(**n) for n in data["nodes"]]
        return cls(**data)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process counts as dead.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def node_env(region: str, directory: Path, nats_url: str, hub_key_id: str = "") -> dict[str, str]:
    var_dir = directory / region
    env = {
        "DATABASE_URL": f"sqlite:///{var_dir / 'piaotong.sqlite3'}",
        "PIAOTONG_VAR_DIR": str(var_dir),
        "PIAOTONG_REGION": region,
        "PIAOTONG_NODE_ID": f"node-{region}",
        "PIAOTONG_NODE_ROLE": "hub" if region == HUB_REGION else "regional",
        "PIAOTONG_NATS_URL": nats_url,
        "DJANGO_SETTINGS_MODULE": "piaotong.settings",
    }
    if hub_key_id:
        env["PIAOTONG_HUB_KEY_ID"] = hub_key_id
    return env


def _full_env(env: dict[str, str]) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIAOTONG_") and k not in {"DATABASE_URL"}
    }
    return inherited | env


def piaotong(
    args: list[str], env: dict[str, str], **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and entry point
        [sys.executable, "-m", "piaotong.cli", *args],
        env=_full_env(env),
        capture_output=True,
        text=True,
        check=False,
        **kwargs,
    )


def _command(kind: str, node: NodeProcesses) -> list[str]:
    if kind == "web":
        return ["serve", "--bind", f"127.0.0.1:{node.port}", "--workers", "1", "--threads", "4",
                "--no-migrate"]  # fmt: skip
    if kind == "alerts":
        return ["sync_alerts", "--every", str(ALERT_POLL_SECONDS)]
    return ["relay"] if kind == "relay" else ["consume"]


def start_process(node: NodeProcesses, kind: str) -> int:
    logs = Path(node.var_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{kind}.log", "ab")  # noqa: SIM115 - the child owns it
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
        [sys.executable, "-m", "piaotong.cli", *_command(kind, node)],
        env=_full_env(node.env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # survives `cluster up`, and is stopped as a group
    )
    node.pids[kind] = process.pid
    return process.pid


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not end in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not is_alive(pid):
                return
            time.sleep(0.1)


def _prepare(region: str, directory: Path, nats_url: str, invoices: int, hub_key: str) -> Any:
    env = node_env(region, directory, nats_url, hub_key)
    Path(env["PIAOTONG_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
        [sys.executable, "-m", "piaotong.cli", "demo", "--invoices-per-org", str(invoices)],
        env=_full_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _identity(region: str, directory: Path, nats_url: str) -> dict[str, str]:
    result = piaotong(["node", "--json"], node_env(region, directory, nats_url))
    if result.returncode != 0:
        raise RuntimeError(f"node {region}: {result.stdout}{result.stderr}")
    identity: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return identity


def _wait_web(node: NodeProcesses, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{node.url}healthz", timeout=1) as answer:  # noqa: S310
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def up(
    directory: Path,
    regions: list[str],
    invoices_per_org: int = 3,
    base_port: int = 0,
    say: Callable[[str], None] = print,
) -> ClusterState:
    """Start NATS and every node; returns the recorded state."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = ClusterState.load(directory)
    if existing is not None and is_alive(existing.nats_pid):
        raise RuntimeError(f"a cluster is running from {directory}: `piaotong cluster down` first")
    nats = LocalNats(directory / "nats").start(detach=True)
    assert nats.process is not None
    say(f"NATS JetStream on {nats.url} (monitoring http://127.0.0.1:{nats.monitor_port}/)")
    hub_key = ""
    if HUB_REGION in regions:
        _prepare(HUB_REGION, directory, nats.url, 0, "").communicate()
        hub_key = _identity(HUB_REGION, directory, nats.url)["key_id"]
        say(f"hub key {hub_key}")
    preparing = {
        r: _prepare(r, directory, nats.url, invoices_per_org, hub_key)
        for r in regions
        if r != HUB_REGION
    }
    for region, process in preparing.items():
        output, _ = process.communicate()
        if process.returncode != 0:
            nats.stop()
            raise RuntimeError(f"node {region} could not be prepared:\n{output}")
        say(f"node {region}: migrated and demo-seeded")
    state = ClusterState(str(directory), nats.process.pid, nats.port, nats.monitor_port, [])
    for index, region in enumerate(regions):
        env = node_env(region, directory, nats.url, hub_key)
        port = base_port + index if base_port else free_port()
        node = NodeProcesses(region, env["PIAOTONG_NODE_ID"], env["PIAOTONG_NODE_ROLE"], port,
                             env["PIAOTONG_VAR_DIR"], env)  # fmt: skip
        for kind in processes_of(region):
            start_process(node, kind)
        state.nodes.append(node)
    state.save()
    for node in state.nodes:
        ready = _wait_web(node)
        say(f"node {node.region} ({node.role}) {node.url} {'ready' if ready else 'NOT READY'}")
    return state


def down(directory: Path, say: Callable[[str], None] = print) -> None:
    state = ClusterState.load(directory)
    if state is None:
        say(f"no cluster recorded in {directory}")
        return
    for node in state.nodes:
        for kind, pid in node.pids.items():
            stop_pid(pid)
            say(f"node {node.region} {kind} (pid {pid}) stopped")
    stop_pid(state.nats_pid)
    say(f"NATS (pid {state.nats_pid}) stopped")
    (directory / "state.json").unlink()


def stop_one(directory: Path, region: str, kind: str) -> int:
    state = _require(directory)
    node = state.node(region)
    pid = node.pids.get(kind, 0)
    if pid:
        stop_pid(pid)
    return pid


def start_one(directory: Path, region: str, kind: str) -> int:
    state = _require(directory)
    node = state.node(region)
    if kind not in processes_of(region):
        raise KeyError(f"node {region} runs no {kind} process (only the hub watches alerts)")
    if node.pids.get(kind) and is_alive(node.pids[kind]):
        return node.pids[kind]
    pid = start_process(node, kind)
    state.save()
    return pid


def _require(directory: Path) -> ClusterState:
    state = ClusterState.load(directory)
    if state is None:
        raise RuntimeError(f"no cluster recorded in {directory}: `piaotong cluster up` first")
    return state


def wait_ready(port: int) -> bool:
    return wait_for_port(port, timeout=30)


def status(directory: Path) -> dict[str, Any]:
    """Processes (alive or not) and each node's `sync status --json`."""
    state = _require(directory)
    nodes = []
    running = {
        n.region: subprocess.Popen(
            [sys.executable, "-m", "piaotong.cli", "sync", "status", "--json"],
            env=_full_env(n.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in state.nodes
    }
    for node in state.nodes:
        output, _ = running[node.region].communicate(timeout=60)
        try:
            sync = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            sync = {}
        nodes.append(
            {
                "region": node.region,
                "node_id": node.node_id,
                "role": node.role,
                "url": node.url,
                "processes": {k: {"pid": p, "alive": is_alive(p)} for k, p in node.pids.items()},
                "sync": sync,
            }
        )
    return {
        "nats": {"url": state.nats_url, "pid": state.nats_pid, "alive": is_alive(state.nats_pid)},
        "nodes": nodes,
    }
