"""Computing a VAT return over a period with 1,000,000 issued invoices, on PostgreSQL.

    python bench/filing.py [--invoices 1000000] [--received 100000] [--runs 3]

The rows are generated server-side (INSERT ... SELECT FROM generate_series, one statement per
table) into a throwaway database `piaotong_bench_filing`, dropped afterwards: one seller issues
`--invoices` invoices in one month (a mix of special and ordinary invoices at 13/9/6 %, 2 % of
them red-letter invoices with negative amounts, 1 % voided), one line each; the same
organisation received `--received` special invoices from another seller, all selected and
confirmed for deduction in that month.

Metrics:
- baseline_count_sum_s (baseline): `SELECT count(*), sum(total_amount), sum(total_tax)` over
  the same invoices (seller and issue-date range), measured in the same run.
- compute_return_s: filing.aggregate.gather_facts + filing.compute.compute_return, the whole
  computation the return page and the submit action run (median of --runs, after one warm-up).
  Target <= 5 s on PostgreSQL.
- drill_first_page_s: the drill-down of all output invoices, count + first page of 50.
- The result is checked against plain SQL sums (output tax and input tax).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PG_ADMIN_URL, ROOT, emit, machine, setup_django

DB_NAME = "piaotong_bench_filing"
PERIOD = "202503"


def _psql(sql: str) -> None:
    subprocess.run(["psql", PG_ADMIN_URL, "-qc", sql], check=True, capture_output=True)


@contextmanager
def throwaway_database() -> Iterator[str]:
    _psql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    _psql(f'CREATE DATABASE "{DB_NAME}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{DB_NAME}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def _columns(model: Any, expressions: dict[str, str]) -> tuple[list[str], list[str], list[Any]]:
    """Column names, SQL expressions and parameters for an INSERT ... SELECT of `model`:
    our expressions where given, else the field's default (or NULL), so fields added to the
    model later still get a value."""
    names, sql, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key and field.column not in expressions:
            continue
        names.append(field.column)
        if field.column in expressions:
            sql.append(expressions[field.column].replace("%", "%%"))
        elif field.null:
            sql.append("NULL")
        else:
            sql.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection=None))
    return names, sql, params


def _insert_select(model: Any, expressions: dict[str, str], source: str, args: list[Any]) -> None:
    from django.db import connection

    names, sql, params = _columns(model, expressions)
    table = model._meta.db_table
    statement = f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(sql)} {source}"
    with connection.cursor() as cursor:
        cursor.execute(statement, params + args)


def _invoice_expressions(
    first_id: int, seller: Any, buyer: Any, seller_code: str
) -> dict[str, str]:
    # i runs from 1; every 50th invoice is red (negative, reversing the invoice before it),
    # every 100th (not red) is voided; kinds alternate special / ordinary; rates cycle.
    amount = "((i % 997) + 1) * 10.00 * (CASE WHEN i % 50 = 0 THEN -1 ELSE 1 END)"
    rate = "(CASE i % 3 WHEN 0 THEN 0.13 WHEN 1 THEN 0.09 ELSE 0.06 END)"
    tax = f"round({amount} * {rate}, 2)"
    return {
        "id": f"{first_id} + i",
        "uid": "gen_random_uuid()",
        "kind": "CASE WHEN i % 4 = 0 THEN 'digital_ordinary' ELSE 'digital_special' END",
        "status": "CASE WHEN i % 100 = 7 THEN 'voided' ELSE 'issued' END",
        "number": f"'25' || '11' || '{seller_code}' || lpad(({first_id} + i)::text, 15, '0')",
        "issue_date": "DATE '2025-03-01' + (i % 31)",
        "issued_at": "TIMESTAMPTZ '2025-03-01 02:00+00' + (i % 31) * INTERVAL '1 day'",
        "seller_id": str(seller.pk),
        "seller_name": f"'{seller.name}'",
        "seller_tax_id": f"'{seller.tax_id}'",
        "buyer_id": str(buyer.pk),
        "buyer_name": f"'{buyer.name}'",
        "buyer_tax_id": f"'{buyer.tax_id}'",
        "total_amount": amount,
        "total_tax": tax,
        "total_with_tax": f"{amount} + {tax}",
        "red_of_id": f"CASE WHEN i % 50 = 0 THEN {first_id} + i - 1 END",
        "created_by_label": "'bench'",
        "issuer_name": "'bench'",
        "created_at": "now()",
        "updated_at": "now()",
    }


def _line_expressions(first_id: int) -> dict[str, str]:
    amount = "((i % 997) + 1) * 10.00 * (CASE WHEN i % 50 = 0 THEN -1 ELSE 1 END)"
    rate = "(CASE i % 3 WHEN 0 THEN 0.13 WHEN 1 THEN 0.09 ELSE 0.06 END)"
    return {
        "invoice_id": f"{first_id} + i",
        "position": "1",
        "kind": "0",
        "tax_code": "'3040201030000000000'",
        "item_name": "'软件维护费'",
        "printed_name": "'*信息技术服务*软件维护费'",
        "amount": amount,
        "tax_rate": "(CASE i % 3 WHEN 0 THEN '0.13' WHEN 1 THEN '0.09' ELSE '0.06' END)",
        "tax": f"round({amount} * {rate}, 2)",
    }


def generate(invoices: int, received: int) -> tuple[Any, float]:
    """Create the organisations and rows; returns (the filing organisation, seconds)."""
    from django.db import connection

    from piaotong.deduction.models import DeductionPeriod, DeductionSelection
    from piaotong.invoices.models import Invoice, InvoiceLine
    from piaotong.testing import make_org

    org = make_org("北京申报基准有限公司", "110108", "MA01BNCH")
    customer = make_org("北京客户基准有限公司", "110105", "MA01BNC2")
    supplier = make_org("北京供应基准有限公司", "110106", "MA01BNC3")
    start = time.perf_counter()
    series = "FROM generate_series(1, %s) AS i"
    _insert_select(Invoice, _invoice_expressions(0, org, customer, "2"), series, [invoices])
    _insert_select(InvoiceLine, _line_expressions(0), series, [invoices])
    received_first = invoices + 1000
    expressions = _invoice_expressions(received_first, supplier, org, "7")
    expressions["kind"] = "'digital_special'"
    expressions["status"] = "'issued'"
    expressions["red_of_id"] = "NULL"
    for key in ("total_amount", "total_tax", "total_with_tax"):
        expressions[key] = expressions[key].replace(
            "(CASE WHEN i % 50 = 0 THEN -1 ELSE 1 END)", "1"
        )
    _insert_select(Invoice, expressions, series, [received])
    period = DeductionPeriod.objects.create(
        buyer=org, period=PERIOD, status="confirmed", confirmed_by_label="bench"
    )
    _insert_select(
        DeductionSelection,
        {
            "invoice_id": "inv.id",
            "deduction_period_id": str(period.pk),
            "purpose": "'deduct'",
            "reason": "''",
            "face_amount": "inv.total_amount",
            "face_tax": "inv.total_tax",
            "effective_tax": "inv.total_tax",
            "selected_at": "TIMESTAMPTZ '2025-03-31 08:00+00'",
            "selected_by_label": "'bench'",
            "revoked_at": "NULL",
        },
        "FROM invoices_invoice inv WHERE inv.buyer_id = %s",
        [org.pk],
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('invoices_invoice', 'id'), "
            "(SELECT max(id) FROM invoices_invoice))"
        )
        cursor.execute("VACUUM ANALYZE")
    return org, time.perf_counter() - start


def timed(func: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def baseline(org: Any) -> Any:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(total_amount), sum(total_tax) FROM invoices_invoice "
            "WHERE seller_id = %s AND issue_date >= %s AND issue_date < %s",
            [org.pk, "2025-03-01", "2025-04-01"],
        )
        return cursor.fetchone()


def expected(org: Any) -> tuple[Any, Any]:
    """Output and input tax by plain SQL, to check the computed return."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(total_tax) FROM invoices_invoice WHERE seller_id = %s "
            "AND issue_date >= '2025-03-01' AND issue_date < '2025-04-01' AND status <> 'voided'",
            [org.pk],
        )
        output = cursor.fetchone()[0]
        cursor.execute(
            "SELECT sum(effective_tax) FROM deduction_deductionselection WHERE revoked_at IS NULL"
        )
        return output, cursor.fetchone()[0]


def child(invoices: int, received: int, runs: int) -> None:
    setup_django()
    from piaotong.filing.aggregate import drill_down, gather_facts
    from piaotong.filing.compute import compute_return
    from piaotong.filing.periods import parse_tax_period

    org, load_seconds = generate(invoices, received)
    emit(
        bench="filing",
        metric="load_rows_per_s",
        db="postgresql",
        value=round((2 * invoices + 2 * received) / load_seconds),
        unit="1/s",
        seconds=round(load_seconds, 1),
    )
    period = parse_tax_period(PERIOD)
    compute = lambda: compute_return(gather_facts(org, period))  # noqa: E731
    baseline(org)
    compute()  # warm-up: both read the same pages once
    base_times = [timed(lambda: baseline(org))[0] for _ in range(runs)]
    times, results = zip(*(timed(compute) for _ in range(runs)), strict=True)
    result = results[-1]
    output_tax, input_tax = expected(org)
    ok_numbers = result.lines["output_tax"] == output_tax and result.lines["input_tax"] == input_tax
    base, value = statistics.median(base_times), statistics.median(times)
    emit(
        bench="filing",
        metric="compute_return_s",
        db="postgresql",
        invoices=invoices,
        received=received,
        value=round(value, 3),
        unit="s",
        runs=[round(t, 3) for t in times],
        baseline="baseline_count_sum_s",
        baseline_value=round(base, 3),
        ratio=round(value / base, 2),
        target="<= 5 s",
        ok=value <= 5 and ok_numbers,
        numbers_match_sql=ok_numbers,
        payable=str(result.lines["payable"]),
    )
    seconds, page = timed(
        lambda: (
            (qs := drill_down(org, period, "output", {})).count(),
            list(qs[:50]),
        )
    )
    emit(
        bench="filing",
        metric="drill_first_page_s",
        db="postgresql",
        value=round(seconds, 3),
        unit="s",
        rows=page[0],
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--received", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.invoices, args.received, args.runs)
        return
    emit(bench="filing", metric="machine", **machine())
    with throwaway_database() as url, tempfile.TemporaryDirectory(prefix="piaotong-var-") as var:
        env = os.environ | {
            "DATABASE_URL": url,
            "PIAOTONG_VAR_DIR": var,
            "PYTHONPATH": str(ROOT / "src"),
        }
        command = [sys.executable, __file__, "--child", *sys.argv[1:]]
        sys.exit(subprocess.run(command, env=env).returncode)


if __name__ == "__main__":
    main()
