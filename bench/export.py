"""Excel export of invoices: throughput and peak memory, against plain CSV of the same rows.

    python bench/export.py [--rows 100000,200000] [--lines N]

Metrics, each measured in a fresh process over the same SQLite database (peak RSS is a
high-water mark, so every measurement needs its own process):
- idle_rss_mb (baseline of memory): Django set up, the database opened, nothing exported.
- csv_rows_per_s (baseline of speed): the invoices and their lines as CSV through
  lib.spreadsheet.csv_lines, from the same `.values_list()` iterators, into a file.
- xlsx_rows_per_s: invoices.export.write_invoices_xlsx into a file. Rows = invoices + lines.
- peak RSS of both at every size: flat across sizes means constant memory; the budget is
  500 MB at 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine, run_child, setup_django

BATCH = 1000


def generate(count: int, lines: int) -> float:
    """Issue `count` invoices with `lines` lines each; returns invoices per second."""
    from piaotong.accounts.access import actor_for_user
    from piaotong.accounts.choices import Role
    from piaotong.invoices.actions import do_issue_invoices
    from piaotong.ledger.keys import node_key
    from piaotong.testing import draft, line, make_org, make_user

    seller = make_org("北京基准测试有限公司", "110108", "MA01BNCH", issuing_quota=10**14)
    buyer = make_org("上海基准测试有限公司", "310115", "MA1BNCH2")
    actor = actor_for_user(make_user("bench", seller, Role.CLERK))
    node_key()
    drafts = [draft(buyer, lines=[line()] * lines)] * BATCH
    start = time.perf_counter()
    for _ in range(count // BATCH):
        do_issue_invoices(actor, seller, drafts)
    return count / (time.perf_counter() - start)


def export_csv(invoices, output) -> int:  # type: ignore[no-untyped-def]
    from piaotong.invoices import export
    from piaotong.invoices.models import InvoiceLine
    from piaotong.lib.spreadsheet import csv_lines

    rows = invoices.order_by(*export.ORDER).values_list(*export.INVOICE_FIELDS)
    lines = (
        InvoiceLine.objects.filter(invoice__in=invoices.values("id"))
        .order_by(*(f"invoice__{f}" for f in export.ORDER), "position")
        .values_list(*export.LINE_FIELDS)
    )
    count = 0
    for header, source in ((export.invoice_header(), rows), (export.line_header(), lines)):
        for text in csv_lines(header, source.iterator(chunk_size=export.CHUNK_SIZE)):
            output.write(text.encode())
            count += 1
    return count - 2


def vm_hwm_mb() -> float:
    """This process's own peak RSS: unlike ru_maxrss, VmHWM is not inherited across exec from
    the parent that generated the data."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(mode: str, limit: int) -> None:
    setup_django()
    from piaotong.invoices.export import write_invoices_xlsx
    from piaotong.invoices.models import Invoice, InvoiceLine

    invoices = Invoice.objects.filter(id__lte=limit)
    rows = invoices.count() + InvoiceLine.objects.filter(invoice_id__lte=limit).count()
    if mode == "idle":
        emit(
            bench="export", metric="idle_rss_mb", invoices=limit, peak_rss_mb=round(vm_hwm_mb(), 1)
        )
        return
    with tempfile.TemporaryFile(dir=os.environ["PIAOTONG_VAR_DIR"]) as output:
        start = time.perf_counter()
        if mode == "csv":
            export_csv(invoices, output)
        else:
            write_invoices_xlsx(invoices, output)
        seconds = time.perf_counter() - start
        size = output.tell()
    emit(
        bench="export",
        metric=f"{mode}_rows_per_s",
        invoices=limit,
        rows=rows,
        value=round(rows / seconds),
        unit="1/s",
        seconds=round(seconds, 1),
        file_mb=round(size / 2**20, 1),
        baseline="csv_rows_per_s" if mode == "xlsx" else None,
        peak_rss_mb=round(vm_hwm_mb(), 1),
    )


def child(sizes: list[int], lines: int) -> None:
    setup_django()
    rate = generate(max(sizes), lines)
    emit(bench="export", metric="generate_invoices_per_s", value=round(rate), unit="1/s")
    for size in sizes:
        for mode in ("idle", "csv", "xlsx"):
            command = [sys.executable, __file__, "--measure", mode, "--limit", str(size)]
            subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="100000,200000", help="invoice counts to export")
    parser.add_argument("--lines", type=int, default=1, help="lines per invoice (default 1)")
    parser.add_argument("--db", default="sqlite", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["idle", "csv", "xlsx"], help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    if args.measure:
        measure(args.measure, args.limit)
    elif args.child:
        child(sizes, args.lines)
    else:
        emit(bench="export", metric="machine", **machine())
        extra = ["--rows", args.rows, "--lines", str(args.lines)]
        sys.exit(run_child(Path(__file__), "sqlite", extra))


if __name__ == "__main__":
    main()
