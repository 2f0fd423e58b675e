"""Reading files: encodings, headers, bad cells, duplicates, merged cells, formulas (no database)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from openpyxl import Workbook

from piaotong.reconciliation.importing import ReadResult, read_file
from piaotong.reconciliation.tests.conftest import HEADER, write_csv, write_xlsx

NUMBER = "26112000000000000042"
TAX_ID = "91110108MA01SEL1XX"
GOOD = [
    NUMBER,
    "2026-03-05",
    "91110108MA01SEL15J",
    "北京供货测试有限公司",
    "1000.00",
    "60.00",
    "1060.00",
]


def codes(result: ReadResult) -> list[tuple[int, str]]:
    return [(issue.row, issue.code) for issue in result.issues]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gbk", "gb18030"])
def test_it_reads_csv_in_the_encodings_chinese_software_writes(tmp_path, encoding):
    result = read_file(write_csv(tmp_path / "books.csv", [GOOD], encoding))
    assert result.ok, [i.message() for i in result.issues]
    [record] = result.records
    assert (record.row, record.key, record.issue_date) == (2, NUMBER, date(2026, 3, 5))
    assert record.seller_name == "北京供货测试有限公司"
    assert (record.amount, record.tax, record.total) == (
        Decimal("1000.00"),
        Decimal("60.00"),
        Decimal("1060.00"),
    )


def test_it_refuses_text_that_is_neither_utf8_nor_gbk(tmp_path):
    path = tmp_path / "books.csv"
    path.write_bytes(",".join(HEADER).encode("utf-8") + b"\n" + b"\xff\xfe\xfa\xff" * 10)
    result = read_file(path)
    assert codes(result) == [(0, "encoding")]
    assert "CSV UTF-8" in result.issues[0].message()


def test_it_stops_at_a_row_whose_bytes_break_the_encoding_and_names_the_row(tmp_path):
    good = "\n".join([",".join(HEADER), ",".join(GOOD)] * 1)
    body = (
        (good + "\n").encode("utf-8") * 1 + b"x" * 70_000 + b"\n" + "\u4e2d".encode("gbk") + b"\n"
    )
    path = tmp_path / "mixed.csv"
    path.write_bytes(body)
    result = read_file(path)
    assert ("bad_bytes") in [issue.code for issue in result.issues]
    assert [i.row for i in result.issues if i.code == "bad_bytes"] == [4]


def test_it_maps_english_headers_and_skips_a_title_row(tmp_path):
    header = ["Invoice No.", "Invoice date", "Seller tax ID", "Total"]
    path = tmp_path / "en.csv"
    path.write_text(
        "2026年3月进项发票清单,,,\n" + ",".join(header) + f"\n{NUMBER},2026/3/5,{GOOD[2]},1060\n",
        encoding="utf-8",
    )
    result = read_file(path)
    assert result.ok
    assert result.records[0].total == Decimal("1060.00") and result.records[0].amount is None
    assert [note.code for note in result.notes] == ["encoding", "header_row"]


def test_it_names_missing_columns_and_how_to_fix_them(tmp_path):
    path = write_csv(tmp_path / "x.csv", [[NUMBER, "x"]], header=["发票号码", "备注"])
    result = read_file(path)
    assert {issue.code for issue in result.issues} == {"no_header"}
    path = write_csv(tmp_path / "y.csv", [[NUMBER, "1060"]], header=["发票号码", "价税合计"])
    result = read_file(path)
    assert [i.code for i in result.issues] == ["missing_column", "missing_column"]
    assert "开票日期" in result.issues[0].message()


def test_it_reports_each_bad_cell_with_row_column_and_fix(tmp_path):
    rows = [
        GOOD,
        ["2611200000000000004", "2026-03-05", GOOD[2], "", "1000", "", ""],
        [NUMBER[:-1] + "3", "3月5日", GOOD[2], "", "约1000", "", ""],
        [NUMBER[:-1] + "4", "2026-03-05", "123", "", "1000.123", "", ""],
        [NUMBER[:-1] + "5", "2026-02-30", GOOD[2], "", "", "60", ""],
    ]
    result = read_file(write_csv(tmp_path / "bad.csv", rows))
    assert codes(result) == [
        (3, "invalid_number"),
        (4, "invalid_date"),
        (4, "invalid_amount"),
        (5, "invalid_tax_id"),
        (5, "too_many_decimals"),
        (6, "invalid_date"),
        (6, "missing_amount"),
    ]
    amount_issue = result.issues[2]
    assert amount_issue.column == "金额 (E)" and amount_issue.value == "约1000"
    assert "1234.50" in amount_issue.message()


def test_it_refuses_repeated_rows_and_notes_rows_sharing_a_number(tmp_path):
    result = read_file(write_csv(tmp_path / "dup.csv", [GOOD, GOOD]))
    assert codes(result) == [(3, "identical_row")]
    assert result.issues[0].params == {"first": 2}
    changed = [*GOOD[:4], "999.00", "60.00", "1059.00"]
    result = read_file(write_csv(tmp_path / "shared.csv", [GOOD, changed]))
    assert result.ok and len(result.records) == 2
    [note] = [n for n in result.notes if n.code == "shared_numbers"]
    assert note.params == {"count": 1, "rows": "3"}


def test_it_skips_blank_and_total_rows(tmp_path):
    rows = [GOOD, ["", "", "", "", "", "", ""], ["合计", "", "", "", "1000.00", "60.00", "1060.00"]]
    result = read_file(write_csv(tmp_path / "t.csv", rows))
    assert result.ok and len(result.records) == 1
    assert "total_rows_skipped" in [note.code for note in result.notes]


def test_it_reads_xlsx_with_dates_and_numbers_as_excel_stores_them(tmp_path):
    from datetime import datetime

    def build(workbook, sheet):
        sheet.write_datetime(
            1, 1, datetime(2026, 3, 5), workbook.add_format({"num_format": "yyyy-mm-dd"})
        )

    row = [NUMBER, None, GOOD[2], "北京供货测试有限公司", 1000, 60.0, 1060.0]
    result = read_file(write_xlsx(tmp_path / "b.xlsx", [row], build=build))
    assert result.ok, [i.message() for i in result.issues]
    assert result.records[0].issue_date == date(2026, 3, 5)
    assert result.records[0].tax == Decimal("60.00")


def test_it_refuses_an_invoice_number_excel_turned_into_a_float(tmp_path):
    row = [2.6112000000000000e19, "2026-03-05", GOOD[2], "", 1000, 60, 1060]
    result = read_file(write_xlsx(tmp_path / "f.xlsx", [row]))
    assert codes(result) == [(2, "number_as_float")]
    assert "文本" in result.issues[0].message()


def test_it_refuses_merged_cells_in_data_rows(tmp_path):
    def build(workbook, sheet):
        sheet.merge_range(1, 2, 2, 2, GOOD[2])

    rows = [GOOD, [NUMBER[:-1] + "3", *GOOD[1:]]]
    result = read_file(write_xlsx(tmp_path / "m.xlsx", rows, build=build))
    assert (2, "merged_cells") in codes(result)
    assert result.issues[0].value == "C2:C3"


def test_it_takes_the_saved_results_of_formulas_and_says_which_cells(tmp_path):
    def build(workbook, sheet):
        sheet.write_formula(1, 6, "=E2+F2", None, 1060)

    row = [*GOOD[:4], 1000, 60, None]
    result = read_file(write_xlsx(tmp_path / "fx.xlsx", [row], build=build))
    assert result.ok, [i.message() for i in result.issues]
    assert result.records[0].total == Decimal("1060.00")
    [note] = [n for n in result.notes if n.code == "formulas_cached"]
    assert note.params == {"count": 1, "cells": "G2"}


def test_it_refuses_formulas_without_a_saved_result(tmp_path):
    path = tmp_path / "nocache.xlsx"
    book = Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append([*GOOD[:4], 1000, 60, "=E2+F2"])
    book.save(path)
    result = read_file(path)
    assert codes(result) == [(2, "formula_without_value")]
    assert result.issues[0].value == "G2"


def test_it_refuses_old_xls_and_binary_files(tmp_path):
    xls = tmp_path / "old.xls"
    xls.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    assert codes(read_file(xls)) == [(0, "xls_format")]
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    assert codes(read_file(binary)) == [(0, "file_type")]


def test_it_reports_progress_while_reading(tmp_path):
    rows = [[f"2611200{k:013d}", *GOOD[1:]] for k in range(1, 12_001)]
    seen = []
    result = read_file(
        write_csv(tmp_path / "p.csv", rows), progress=lambda read, total: seen.append((read, total))
    )
    assert result.ok and len(result.records) == 12_000
    assert seen == [(5000, 12000), (10000, 12000), (12000, 12000)]


def test_it_uses_the_supplier_tax_id_given_for_a_list_without_seller_column(tmp_path):
    path = write_csv(
        tmp_path / "s.csv",
        [[NUMBER, "2026-03-05", "1060"]],
        header=["发票号码", "开票日期", "价税合计"],
    )
    assert [i.code for i in read_file(path).issues] == ["missing_column"]
    result = read_file(path, default_seller_tax_id=GOOD[2].lower())
    assert result.ok and result.records[0].seller_tax_id == GOOD[2]
