"""The web process under load: API issuing throughput and the workers' peak memory.

    python bench/web.py [--db sqlite|postgresql|all] [--requests N] [--clients N]

Starts `piaotong serve` (gunicorn, 2 workers x 4 threads) on a fresh database with demo data,
then drives it from 8 client threads over keep-alive connections:
- baseline: GET /healthz (the trivial endpoint) requests per second;
- POST /api/v1/invoices with an API key and an Idempotency-Key (a 3-line 数电专票 each);
- GET /api/v1/invoices (a page of 50).
Memory: each gunicorn worker's peak RSS (VmHWM) after the load. Budget: < 300 MB per process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, database, emit, machine

PIAOTONG = [sys.executable, "-m", "piaotong.cli"]
BUYER = "91310115MA1PJ0048M"  # the demo's Shanghai buyer
BODY = {
    "kind": "digital_special",
    "buyer_name": "上海浦江贸易有限公司",
    "buyer_tax_id": BUYER,
    "lines": [
        {
            "tax_code": "3040201030000000000",
            "item_name": "软件维护费",
            "tax_rate": "0.06",
            "quantity": "2",
            "unit_price": "500",
        },
        {
            "tax_code": "1090511030000000000",
            "item_name": "笔记本电脑",
            "tax_rate": "0.13",
            "amount": "4999.99",
        },
        {
            "tax_code": "3010102020000000000",
            "item_name": "运输费",
            "tax_rate": "0.09",
            "amount": "880",
        },
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drive(port: int, clients: int, total: int, request) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Send `total` requests from `clients` threads; returns (requests per second, failures)."""
    per_client, failures, lock = total // clients, [0], threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for _ in range(per_client):
            status = request(connection)
            if status >= 300:
                with lock:
                    failures[0] += 1
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return per_client * clients / (time.perf_counter() - start), failures[0]


def get(path: str, token: str = ""):  # type: ignore[no-untyped-def]
    def request(connection: http.client.HTTPConnection) -> int:
        connection.request("GET", path, headers={"X-API-Key": token} if token else {})
        response = connection.getresponse()
        response.read()
        return response.status

    return request


def post_invoice(token: str):  # type: ignore[no-untyped-def]
    body = json.dumps(BODY).encode()

    def request(connection: http.client.HTTPConnection) -> int:
        headers = {
            "X-API-Key": token,
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        connection.request("POST", "/api/v1/invoices", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    return request


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(kind: str, requests: int, clients: int) -> None:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="piaotong-web-") as var:
        env = os.environ | {
            "DATABASE_URL": url,
            "PIAOTONG_VAR_DIR": var,
            "PYTHONPATH": str(ROOT / "src"),
        }
        subprocess.run(
            [*PIAOTONG, "demo", "--invoices-per-org", "20"],
            env=env,
            check=True,
            capture_output=True,
        )
        created = subprocess.run(
            [*PIAOTONG, "apikey", "create", "--org", "91110108MA01YF012Q", "--name", "bench"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        token = created.stdout.strip().splitlines()[-1]
        port = free_port()
        server = subprocess.Popen(
            [
                *PIAOTONG,
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--no-migrate",
            ],
            env=env | {"PIAOTONG_LOG_LEVEL": "WARNING"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(port)
            measure(kind, port, token, requests, clients, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)


def wait_until_up(port: int) -> None:
    for _ in range(200):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not come up")


def measure(kind: str, port: int, token: str, requests: int, clients: int, master: int) -> None:
    drive(port, clients, 200, get("/healthz"))  # warm up the workers
    baseline, _ = drive(port, clients, requests * 2, get("/healthz"))
    emit(bench="web", metric="healthz_per_s", db=kind, value=round(baseline, 1), unit="1/s")
    issued, failed = drive(port, clients, requests, post_invoice(token))
    emit(
        bench="web",
        metric="api_issue_per_s",
        db=kind,
        value=round(issued, 1),
        unit="1/s",
        baseline="healthz_per_s",
        baseline_value=round(baseline, 1),
        ratio=round(issued / baseline, 3),
        failures=failed,
        clients=clients,
        lines_per_invoice=3,
    )
    listed, failed = drive(port, clients, requests, get("/api/v1/invoices?page_size=50", token))
    emit(
        bench="web",
        metric="api_list_per_s",
        db=kind,
        value=round(listed, 1),
        unit="1/s",
        baseline="healthz_per_s",
        baseline_value=round(baseline, 1),
        ratio=round(listed / baseline, 3),
        failures=failed,
    )
    workers = children(master)
    peak = max(peak_rss_mb(pid) for pid in workers)
    emit(
        bench="web",
        metric="worker_peak_rss_mb",
        db=kind,
        value=round(peak, 1),
        unit="MB",
        workers=len(workers),
        target="< 300 MB",
        ok=peak < 300,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    emit(bench="web", metric="machine", **machine())
    for kind in ["sqlite", "postgresql"] if args.db == "all" else [args.db]:
        run(kind, args.requests, args.clients)


if __name__ == "__main__":
    main()
