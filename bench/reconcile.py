"""Purchase reconciliation: the rule-table matcher on 100,000 records against 100,000 invoices,
and (--big) the whole import path of 1,000,000 rows on a throwaway database.

    python bench/reconcile.py [--rows 100000] [--seed 7] [--skip-read]
    python bench/reconcile.py --big [--rows 1000000] [--db sqlite|postgresql]

What is measured, in this one process (no database):
- generate: 100,000 received invoices (500 sellers, some through branches) and the books that
  describe them, with injected cases, ~1% each: one digit wrong, two adjacent digits swapped,
  rounding differences within the allowance, issue dates shifted by 1-5 days, the head office
  booked for a branch's invoice (legal-entity level), an old 15-character tax id, numbers
  written with spaces and full-width digits, invoices missing from the books, and rows for
  invoices that are not on the platform. Generation is not timed.
- baseline_dict_join_s: a plain dict join on the exact number, the naive reconciliation.
- match_s: `reconciliation.matching.reconcile` over the same data: the whole rule table, every
  decision with its differing fields (explanation sentences are written later, when shown).
  Target <= 10 s. Its precision and recall on the injected cases (and the baseline's) are
  printed; target >= 0.99 both.
- read_csv_rows_per_s (unless --skip-read): `reconciliation.importing.read_file` parsing and
  checking the same books written as a GB18030 CSV.
- peak RSS of the process (VmHWM) after each step.

--big measures the whole import as a user runs it, on a fresh throwaway database (SQLite file or
`piaotong_bench_*` PostgreSQL database, dropped afterwards):
- set-up (not timed): `--rows` received invoices inserted for the buyer (bulk rows, one line
  each as far as the rounding allowance goes: line rows are not inserted), and the books that
  describe them, with the same injected cases, written as a GB18030 CSV, streamed (nothing is
  held in memory).
- baseline_idle_rss_mb: peak RSS of a fresh process with Django set up, doing nothing;
  baseline_csv_rows_per_s: the same file through a bare `csv.reader` (decoding and splitting).
- import: in another fresh process, `do_create_import_job` + `do_run_import`: read and check
  every row, load the received invoices, match, store every item in one transaction. Prints
  the wall time, the time of each step (from the job's status changes, sampled every 0.1 s),
  and the peak RSS (VmHWM) of that process. Target < 500 MB.
- quality: the stored items scored like the engine above (precision and recall of the pairs on
  the injected rows, invoices left out of the books found missing).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import emit, machine

INJECTIONS = (
    "typo",
    "swap",
    "rounding",
    "date_shift",
    "branch",
    "old_tax_id",
    "formatting",
    "missing_in_books",
    "missing_on_platform",
)
RATE = 0.01  # share of records per injection


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Dataset:
    invoices: list  # PlatformInvoice
    records: list  # BookRecord
    truth: list[int | None]  # invoice index per record
    injected: list[str]  # injection per record ("" for none)
    dropped: set[int]  # invoice indexes left out of the books


def sellers(rng: random.Random, count: int) -> list[tuple[str, str, str, str]]:
    """(tax id, name, branch tax id, branch name) per seller."""
    from piaotong.lib.taxid import compose_uscc

    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    result = []
    for index in range(count):
        org8 = "MA" + "".join(rng.choice(alphabet) for _ in range(6))
        branch8 = "MB" + "".join(rng.choice(alphabet) for _ in range(6))
        name = f"北京测试供应商{index:04d}有限公司"
        result.append(
            (
                compose_uscc("9", "1", "110108", org8),
                name,
                compose_uscc("9", "1", "310115", branch8),
                name + "上海分公司",
            )
        )
    return result


def generate(rows: int, seed: int) -> Dataset:
    from piaotong.reconciliation.matching import BookRecord, PlatformInvoice

    rng = random.Random(seed)
    parties = sellers(rng, 500)
    invoices, sequence = [], 10_000
    start = date(2026, 1, 1)
    for index in range(rows):
        sequence += rng.randint(1, 3)
        tax_id, name, branch_id, branch_name = parties[rng.randrange(len(parties))]
        by_branch = rng.random() < 0.05
        amount = Decimal(rng.randrange(1_000, 5_000_000)) / 100
        lines = rng.randint(1, 8)
        tax = (amount * Decimal("0.13")).quantize(Decimal("0.01"))
        invoices.append(
            PlatformInvoice(
                id=index,
                number=f"26112{sequence:015d}",
                issue_date=start + timedelta(days=rng.randrange(90)),
                seller_tax_id=branch_id if by_branch else tax_id,
                seller_name=branch_name if by_branch else name,
                amount=amount,
                tax=tax,
                total=amount + tax,
                lines=lines,
            )
        )
    head_office = {p[2]: (p[0], p[1]) for p in parties}
    kinds = list(INJECTIONS)
    records, truth, injected, dropped = [], [], [], set()
    for index, invoice in enumerate(invoices):
        kind = kinds[rng.randrange(len(kinds))] if rng.random() < RATE * len(kinds) else ""
        if kind == "branch" and invoice.seller_tax_id not in head_office:
            kind = "old_tax_id"
        if kind == "missing_in_books":
            dropped.add(index)
            continue
        record = BookRecord(
            row=len(records) + 2,
            number=invoice.number,
            key=invoice.number,
            issue_date=invoice.issue_date,
            seller_tax_id=invoice.seller_tax_id,
            seller_name=invoice.seller_name,
            amount=invoice.amount,
            tax=invoice.tax,
            total=invoice.total,
        )
        target: int | None = index
        if kind == "missing_on_platform":
            number = f"26112{900_000_000_000_000 + index:015d}"
            record = replace(record, number=number, key=number)
            target = None
        else:
            record = inject(rng, kind, record, invoice, head_office)
        records.append(record)
        truth.append(target)
        injected.append(kind)
    return Dataset(invoices, records, truth, injected, dropped)


def inject(rng, kind, record, invoice, head_office):  # type: ignore[no-untyped-def]
    from piaotong.reconciliation.normalize import invoice_key

    number = invoice.number
    if kind == "typo":
        position = rng.randrange(5, 20)
        digit = str((int(number[position]) + rng.randint(1, 9)) % 10)
        typed = number[:position] + digit + number[position + 1 :]
        return replace(record, number=typed, key=typed)
    if kind == "swap":
        positions = [i for i in range(5, 19) if number[i] != number[i + 1]]
        i = rng.choice(positions)
        typed = number[:i] + number[i + 1] + number[i] + number[i + 2 :]
        return replace(record, number=typed, key=typed)
    if kind == "rounding":
        allowance = min(Decimal("1.27"), Decimal("0.01") * invoice.lines)
        delta = Decimal(rng.randint(1, int(allowance * 100))) / 100 * rng.choice((1, -1))
        return replace(record, tax=invoice.tax + delta, total=invoice.total + delta)
    if kind == "date_shift":
        return replace(record, issue_date=invoice.issue_date + timedelta(days=rng.randint(1, 5)))
    if kind == "branch":
        tax_id, name = head_office[invoice.seller_tax_id]
        return replace(record, seller_tax_id=tax_id, seller_name=name)
    if kind == "old_tax_id":
        return replace(record, seller_tax_id=invoice.seller_tax_id[2:17], seller_name="")
    if kind == "formatting":
        written = " ".join(number[i : i + 4] for i in range(0, 20, 4)).translate(
            str.maketrans("0123456789", "０１２３４５６７８９")
        )
        return replace(record, number=written, key=invoice_key(written).key)
    return record


def score(data: Dataset, predicted: list[int | None]) -> dict[str, float]:
    """Precision and recall of pairs on the injected records; plus invoices left out of the
    books correctly reported missing."""
    tp = fp = fn = 0
    for target, guess, kind in zip(data.truth, predicted, data.injected, strict=True):
        if not kind:
            continue
        if guess is not None and guess == target:
            tp += 1
        elif guess is not None:
            fp += 1
        if target is not None and guess != target:
            fn += 1
    paired = set(p for p in predicted if p is not None)
    found_missing = sum(1 for i in data.dropped if i not in paired)
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "missing_in_books_found": round(found_missing / len(data.dropped), 4)
        if data.dropped
        else 1.0,
    }


def baseline(data: Dataset) -> tuple[float, list[int | None]]:
    start = time.perf_counter()
    by_number = {invoice.number: index for index, invoice in enumerate(data.invoices)}
    predicted = [by_number.get(record.number) for record in data.records]
    return time.perf_counter() - start, predicted


def engine(data: Dataset) -> tuple[float, list[int | None], dict[str, int]]:
    from piaotong.reconciliation.matching import reconcile

    start = time.perf_counter()
    decisions = reconcile(data.records, data.invoices)
    seconds = time.perf_counter() - start
    predicted: list[int | None] = [None] * len(data.records)
    by_rule: dict[str, int] = {}
    for decision in decisions:
        by_rule[decision.rule.value] = by_rule.get(decision.rule.value, 0) + 1
        if decision.record is not None:
            predicted[decision.record] = decision.invoice
    return seconds, predicted, by_rule


def read_csv(data: Dataset) -> tuple[float, int]:
    from piaotong.reconciliation.importing import read_file

    with tempfile.TemporaryDirectory(prefix="piaotong-bench-") as tmp:
        path = Path(tmp) / "books.csv"
        with path.open("w", encoding="gb18030", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [
                    "发票号码",
                    "开票日期",
                    "销售方纳税人识别号",
                    "销售方名称",
                    "金额",
                    "税额",
                    "价税合计",
                ]
            )
            for r in data.records:
                writer.writerow(
                    [
                        r.number,
                        r.issue_date,
                        r.seller_tax_id,
                        r.seller_name,
                        r.amount,
                        r.tax,
                        r.total,
                    ]
                )
        start = time.perf_counter()
        result = read_file(path)
        seconds = time.perf_counter() - start
    assert result.ok, [issue.message() for issue in result.issues[:5]]
    return seconds, result.rows_read


# --- --big: the whole import path on a throwaway database ----------------------------------------

BOOKS_HEADER = [
    "发票号码",
    "开票日期",
    "销售方纳税人识别号",
    "销售方名称",
    "金额",
    "税额",
    "价税合计",
]
# Which step of the import the main thread is in, by the innermost function on its stack.
STEPS = {
    "read_file": "read",
    "received_invoices": "load_invoices",
    "reconcile": "match",  # before the column tables
    "match": "match",
    "_store": "store",
}


def vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stream_cases(rows: int, seed: int):  # type: ignore[no-untyped-def]
    """(invoice, record or None, target invoice index or None, injection) per invoice, streamed:
    the same cases as `generate`, with one line per invoice (no line rows in the database)."""
    from piaotong.reconciliation.matching import BookRecord, PlatformInvoice

    rng, injections = random.Random(seed), random.Random(seed + 1)
    parties = sellers(rng, 500)
    head_office = {p[2]: (p[0], p[1]) for p in parties}
    start, sequence, written = date(2026, 1, 1), 10_000, 0
    for index in range(rows):
        sequence += rng.randint(1, 3)
        tax_id, name, branch_id, branch_name = parties[rng.randrange(len(parties))]
        by_branch = rng.random() < 0.05
        amount = Decimal(rng.randrange(1_000, 5_000_000)) / 100
        tax = (amount * Decimal("0.13")).quantize(Decimal("0.01"))
        invoice = PlatformInvoice(
            id=index,
            number=f"26112{sequence:015d}",
            issue_date=start + timedelta(days=rng.randrange(90)),
            seller_tax_id=branch_id if by_branch else tax_id,
            seller_name=branch_name if by_branch else name,
            amount=amount,
            tax=tax,
            total=amount + tax,
            lines=1,
        )
        kind = (
            INJECTIONS[injections.randrange(len(INJECTIONS))]
            if injections.random() < RATE * len(INJECTIONS)
            else ""
        )
        if kind == "branch" and invoice.seller_tax_id not in head_office:
            kind = "old_tax_id"
        if kind == "missing_in_books":
            yield invoice, None, index, kind
            continue
        record = BookRecord(
            row=written + 2,
            number=invoice.number,
            key=invoice.number,
            issue_date=invoice.issue_date,
            seller_tax_id=invoice.seller_tax_id,
            seller_name=invoice.seller_name,
            amount=invoice.amount,
            tax=invoice.tax,
            total=invoice.total,
        )
        written += 1
        target: int | None = index
        if kind == "missing_on_platform":
            number = f"26112{900_000_000_000_000 + index:015d}"
            record = replace(record, number=number, key=number)
            target = None
        else:
            record = inject(injections, kind, record, invoice, head_office)
        yield invoice, record, target, kind


def big_setup(rows: int, seed: int, books: Path) -> tuple[str, str]:
    """Organisations, a finance manager, the received invoices and the books file."""
    from piaotong.accounts.choices import Role
    from piaotong.invoices.models import Invoice
    from piaotong.testing import make_org, make_user

    seller = make_org("北京基准测试有限公司", "110108", "MA01BNCH")
    buyer = make_org("上海基准测试有限公司", "310115", "MA1BNCH2")
    make_user("bench-finance", buyer, Role.FINANCE_MANAGER)
    batch: list = []
    with books.open("w", encoding="gb18030", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(BOOKS_HEADER)
        for invoice, record, _target, _kind in stream_cases(rows, seed):
            batch.append(
                Invoice(
                    kind="digital_special",
                    status="issued",
                    number=invoice.number,
                    issue_date=invoice.issue_date,
                    seller=seller,
                    seller_name=invoice.seller_name,
                    seller_tax_id=invoice.seller_tax_id,
                    buyer=buyer,
                    buyer_name=buyer.name,
                    buyer_tax_id=buyer.tax_id,
                    total_amount=invoice.amount,
                    total_tax=invoice.tax,
                    total_with_tax=invoice.total,
                    created_by_label="bench",
                )
            )
            if len(batch) == 5000:
                Invoice.objects.bulk_create(batch)
                batch = []
            if record is not None:
                writer.writerow(
                    [
                        record.number,
                        record.issue_date,
                        record.seller_tax_id,
                        record.seller_name,
                        record.amount,
                        record.tax,
                        record.total,
                    ]
                )
        Invoice.objects.bulk_create(batch)
    return buyer.tax_id, "bench-finance"


def big_score(job_id: int, rows: int, seed: int) -> dict[str, float]:
    """The stored items against the injected truth (by invoice number)."""
    from piaotong.reconciliation.models import ReconciliationItem

    paired = dict(
        ReconciliationItem.objects.filter(job_id=job_id, row__isnull=False)
        .values_list("row", "invoice__number")
        .iterator(chunk_size=10_000)
    )
    tp = fp = fn = found_missing = dropped = 0
    numbers_paired = {number for number in paired.values() if number}
    for invoice, record, target, kind in stream_cases(rows, seed):
        if record is None:
            dropped += 1
            found_missing += invoice.number not in numbers_paired
            continue
        if not kind:
            continue
        guess = paired.get(record.row)
        truth = invoice.number if target is not None else None
        if guess is not None and guess == truth:
            tp += 1
        elif guess is not None:
            fp += 1
        if truth is not None and guess != truth:
            fn += 1
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "missing_in_books_found": round(found_missing / dropped, 4) if dropped else 1.0,
    }


def big_child(args: argparse.Namespace) -> None:
    from common import setup_django

    setup_django()
    with tempfile.TemporaryDirectory(prefix="piaotong-bench-") as tmp:
        books = Path(tmp) / "books.csv"
        start = time.perf_counter()
        org, user = big_setup(args.rows, args.seed, books)
        emit(
            bench="reconcile",
            metric="big_setup_s",
            db=args.db,
            invoices=args.rows,
            file_mb=round(books.stat().st_size / 2**20, 1),
            value=round(time.perf_counter() - start, 1),
            unit="s",
        )
        for mode in ("idle", "csv", "import"):
            command = [sys.executable, __file__, "--measure", mode, "--file", str(books)]
            command += ["--org", org, "--user", user]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            for line in output.splitlines():
                print(line, flush=True)
                fields = json.loads(line)
                if fields.get("metric") == "import_s":
                    emit(
                        bench="reconcile",
                        metric="big_quality",
                        rows=fields["rows"],
                        **big_score(fields["job"], args.rows, args.seed),
                    )


def big_measure(args: argparse.Namespace) -> None:
    """One step in a fresh process, so its peak RSS is its own."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "piaotong.settings")
    import django

    django.setup()
    if args.measure == "idle":
        hwm = round(vm_hwm_mb(), 1)
        emit(bench="reconcile", metric="baseline_idle_rss_mb", value=hwm, peak_rss_mb=hwm)
        return
    if args.measure == "csv":
        start, count = time.perf_counter(), 0
        with open(args.file, encoding="gb18030", newline="") as handle:
            for _row in csv.reader(handle):
                count += 1
        seconds = time.perf_counter() - start
        emit(
            bench="reconcile",
            metric="baseline_csv_rows_per_s",
            value=round(count / seconds),
            unit="1/s",
            peak_rss_mb=round(vm_hwm_mb(), 1),
        )
        return
    big_import(args)


def big_import(args: argparse.Namespace) -> None:
    from piaotong.accounts.access import actor_for_user
    from piaotong.accounts.models import Organisation, User
    from piaotong.reconciliation.actions import ImportOptions, do_create_import_job, do_run_import

    actor = actor_for_user(User.objects.get(username=args.user))
    organisation = Organisation.objects.get(tax_id=args.org)
    steps: dict[str, list[float]] = {}  # step -> [seconds, peak sampled RSS]
    done = threading.Event()
    main_thread = threading.main_thread().ident

    def sample() -> None:
        last = time.perf_counter()
        while not done.wait(0.1):
            now = time.perf_counter()
            elapsed, last = now - last, now
            frame, step = sys._current_frames().get(main_thread), "other"
            while frame is not None:
                if frame.f_code.co_name in STEPS:
                    step = STEPS[frame.f_code.co_name]
                    break
                frame = frame.f_back
            seconds, rss = steps.setdefault(step, [0.0, 0.0])
            steps[step] = [seconds + elapsed, max(rss, vm_rss_mb())]

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    with open(args.file, "rb") as source:
        job, _created = do_create_import_job(
            actor, organisation, source, Path(args.file).name, ImportOptions()
        )
    sampler.start()
    finished = do_run_import(job.pk)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    assert finished is not None and finished.status == "done", finished and finished.status
    peak = vm_hwm_mb()
    emit(
        bench="reconcile",
        metric="import_s",
        job=finished.pk,
        rows=finished.rows_read,
        items=finished.items.count(),
        value=round(seconds, 1),
        unit="s",
        steps={k: {"s": round(v[0], 1), "rss_mb": round(v[1])} for k, v in steps.items()},
        summary=finished.summary,
        target="peak RSS < 500 MB",
        ok=peak < 500,
        peak_rss_mb=round(peak, 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-read", action="store_true")
    parser.add_argument("--big", action="store_true", help="the whole import on a throwaway db")
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["idle", "csv", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--org", help=argparse.SUPPRESS)
    parser.add_argument("--user", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        big_measure(args)
        return
    if args.child:
        big_child(args)
        return
    if args.big:
        from common import run_child

        emit(bench="reconcile", metric="machine", **machine())
        extra = ["--rows", str(args.rows), "--seed", str(args.seed)]
        sys.exit(run_child(Path(__file__), args.db, extra))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "piaotong.settings")
    import django

    django.setup()
    emit(bench="reconcile", metric="machine", **machine())
    data = generate(args.rows, args.seed)
    counts = {kind: data.injected.count(kind) for kind in INJECTIONS}
    counts["missing_in_books"] = len(data.dropped)
    emit(
        bench="reconcile",
        metric="dataset",
        invoices=len(data.invoices),
        records=len(data.records),
        injected=counts,
        peak_rss_mb=round(vm_hwm_mb(), 1),
    )
    base_seconds, base_predicted = baseline(data)
    base_score = score(data, base_predicted)
    emit(
        bench="reconcile",
        metric="baseline_dict_join_s",
        value=round(base_seconds, 3),
        unit="s",
        **base_score,
        peak_rss_mb=round(vm_hwm_mb(), 1),
    )
    seconds, predicted, by_rule = engine(data)
    quality = score(data, predicted)
    emit(
        bench="reconcile",
        metric="match_s",
        rows=len(data.records),
        invoices=len(data.invoices),
        value=round(seconds, 3),
        unit="s",
        baseline="baseline_dict_join_s",
        baseline_value=round(base_seconds, 3),
        ratio=round(seconds / base_seconds, 1),
        **quality,
        decisions_by_rule=by_rule,
        target="<= 10 s, precision and recall >= 0.99",
        ok=seconds <= 10 and quality["precision"] >= 0.99 and quality["recall"] >= 0.99,
        peak_rss_mb=round(vm_hwm_mb(), 1),
    )
    if not args.skip_read:
        read_seconds, read_rows = read_csv(data)
        emit(
            bench="reconcile",
            metric="read_csv_rows_per_s",
            rows=read_rows,
            value=round(read_rows / read_seconds),
            unit="1/s",
            seconds=round(read_seconds, 2),
            encoding="gb18030",
            peak_rss_mb=round(vm_hwm_mb(), 1),
        )


if __name__ == "__main__":
    main()
