"""Exports of a return version: JSON and XML representations, and an Excel workbook.

JSON shape (schema `piaotong.vat_return`, version 1; decimals are strings with two decimals):

    {"schema": "piaotong.vat_return", "schema_version": 1,
     "taxpayer": {"name", "tax_id", "taxpayer_kind"},
     "period": "202503" | "2025Q1", "months": 1 | 3,
     "version": 1, "status": "draft" | "submitted" | "superseded", "amendment_reason": "",
     "prepared_at": ISO 8601, "submitted_at": ISO 8601 | null, "content_hash": hex | "",
     "lines": [{"name": "output_tax", "label_zh": "销项税额", "label_en": "Output tax", "value": "130.00"}],
     "output": [{"special": true, "rate": "0.13", "amount", "tax", "lines": 3}],
     "input": [{"kind", "invoices", "amount", "face_tax", "effective_tax"}],
     "levy": [{"rate", "taxable_sales", "exempt_sales", "tax_due", "exempt_tax"}],
     "below_threshold": false}

XML: the same facts as `<VatReturn xmlns="urn:piaotong:vat-return:1" schemaVersion="1"
period=".." months=".." version=".." status="..">` with children `Taxpayer` (attributes),
`Lines/Line name=".." labelZh=".." labelEn=".."` (text: the value), `Output/Group`,
`Input/Group` and `Levy/Row` (attributes as in JSON, camelCase).

The workbook has the lines, the groups, and every invoice behind them (sheet 发票明细), written
in xlsxwriter's constant_memory mode from streaming queries.
"""

from __future__ import annotations

import re
from typing import IO, Any

import xlsxwriter
from django.utils import translation
from lxml import etree

from piaotong.filing.aggregate import drill_down
from piaotong.filing.choices import DrillPart
from piaotong.filing.compute import LINES
from piaotong.filing.models import VatReturn
from piaotong.filing.periods import parse_tax_period
from piaotong.lib.spreadsheet import safe_cell

SCHEMA = "piaotong.vat_return"
SCHEMA_VERSION = 1
NAMESPACE = "urn:piaotong:vat-return:1"
CHUNK_SIZE = 2000


def _label(text: Any, language: str) -> str:
    with translation.override(language):
        return str(text)


def return_document(vat_return: VatReturn) -> dict[str, Any]:
    numbers = vat_return.numbers
    organisation = vat_return.organisation
    labels = LINES[vat_return.taxpayer_kind]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "taxpayer": {
            "name": organisation.name,
            "tax_id": organisation.tax_id,
            "taxpayer_kind": vat_return.taxpayer_kind,
        },
        "period": vat_return.period,
        "months": numbers.get("months", 1),
        "version": vat_return.version,
        "status": vat_return.status,
        "amendment_reason": vat_return.amendment_reason,
        "prepared_at": vat_return.prepared_at.isoformat(),
        "submitted_at": vat_return.submitted_at.isoformat() if vat_return.submitted_at else None,
        "content_hash": vat_return.content_hash,
        "lines": [
            {
                "name": name,
                "label_zh": _label(labels.get(name, name), "zh-hans"),
                "label_en": _label(labels.get(name, name), "en"),
                "value": value,
            }
            for name, value in numbers["lines"].items()
        ],
        "output": numbers.get("output", []),
        "input": numbers.get("input", []),
        "levy": numbers.get("levy", []),
        "below_threshold": numbers.get("below_threshold", False),
    }


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _attrs(row: dict[str, Any]) -> dict[str, str]:
    return {
        _camel(key): (str(value).lower() if isinstance(value, bool) else str(value))
        for key, value in row.items()
    }


def return_xml(vat_return: VatReturn) -> bytes:
    doc = return_document(vat_return)
    root = etree.Element(
        f"{{{NAMESPACE}}}VatReturn",
        nsmap={None: NAMESPACE},
        schemaVersion=str(SCHEMA_VERSION),
        period=doc["period"],
        months=str(doc["months"]),
        version=str(doc["version"]),
        status=doc["status"],
    )
    etree.SubElement(root, f"{{{NAMESPACE}}}Taxpayer", _attrs(doc["taxpayer"]))
    meta = {
        k: doc[k] or "" for k in ("prepared_at", "submitted_at", "content_hash", "amendment_reason")
    }
    etree.SubElement(
        root, f"{{{NAMESPACE}}}Filing", _attrs(meta | {"below_threshold": doc["below_threshold"]})
    )
    lines = etree.SubElement(root, f"{{{NAMESPACE}}}Lines")
    for line in doc["lines"]:
        element = etree.SubElement(
            lines,
            f"{{{NAMESPACE}}}Line",
            name=line["name"],
            labelZh=line["label_zh"],
            labelEn=line["label_en"],
        )
        element.text = line["value"]
    for section, child in (("output", "Group"), ("input", "Group"), ("levy", "Row")):
        parent = etree.SubElement(root, f"{{{NAMESPACE}}}{section.capitalize()}")
        for row in doc[section]:
            etree.SubElement(parent, f"{{{NAMESPACE}}}{child}", _attrs(row))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


INVOICE_COLUMNS = (
    "number",
    "issue_date",
    "kind",
    "status",
    "seller_name",
    "buyer_name",
    "total_amount",
    "total_tax",
)


def write_return_xlsx(vat_return: VatReturn, output: IO[bytes]) -> int:
    """The workbook; returns the number of invoice rows written."""
    doc = return_document(vat_return)
    workbook = xlsxwriter.Workbook(output, {"constant_memory": True, "in_memory": False})
    money = workbook.add_format({"num_format": "0.00"})
    sheet = workbook.add_worksheet("申报表 Return")
    sheet.write_row(0, 0, ["栏次 line", "名称", "Name", "金额 value"])
    for row, line in enumerate(doc["lines"], start=1):
        sheet.write_row(row, 0, [line["name"], line["label_zh"], line["label_en"]])
        sheet.write_number(row, 3, float(line["value"]), money)
    for title, section in (("销项 Output", "output"), ("进项 Input", "input")):
        rows = doc[section]
        group_sheet = workbook.add_worksheet(title)
        if rows:
            group_sheet.write_row(0, 0, list(rows[0]))
            for index, item in enumerate(rows, start=1):
                group_sheet.write_row(index, 0, [safe_cell(str(v)) for v in item.values()])
    count = _write_invoices(workbook.add_worksheet("发票明细 Invoices"), vat_return, money)
    workbook.close()
    return count


def _write_invoices(sheet: Any, vat_return: VatReturn, money: Any) -> int:
    sheet.write_row(0, 0, ["part", *INVOICE_COLUMNS])
    period = parse_tax_period(vat_return.period)
    row = 1
    parts = [DrillPart.OUTPUT, DrillPart.INPUT, DrillPart.TRANSFER_OUT, DrillPart.VOIDED]
    for part in parts:
        invoices = drill_down(vat_return.organisation, period, part, {}).values_list(
            *INVOICE_COLUMNS
        )
        for values in invoices.iterator(chunk_size=CHUNK_SIZE):
            sheet.write_string(row, 0, str(part))
            for column, value in enumerate(values, start=1):
                if column >= len(INVOICE_COLUMNS) - 1:
                    sheet.write_number(row, column, float(value), money)
                else:
                    sheet.write_string(row, column, safe_cell(str(value)))
            row += 1
    return row - 1
