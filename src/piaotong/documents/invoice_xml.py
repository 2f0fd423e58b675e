"""The invoice XML (数电票 XML): element names of the real files, plus our signature element.

Layout (china-einvoice.md §5): ``EInvoice`` → ``Header/EIid``; ``EInvoiceData`` →
``SellerInformation``, ``BuyerInformation``, ``BasicInformation``, repeated
``IssuItemInformation``, ``AdditionalInformation``; ``TaxSupervisionInfo``. Our
``PiaotongSignature`` carries the canonical payload (base64) with its hash, the key id and the
Ed25519 signature, so the file can be checked offline and any visible element that disagrees
with the signed payload is named. The schema is `schemas/einvoice.xsd`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from django.utils.translation import gettext_lazy as _
from lxml import etree

from piaotong.documents.content import SignedInvoice
from piaotong.lib.capitals import to_chinese_capitals
from piaotong.lib.errors import RuleViolation

SCHEMA_PATH = Path(__file__).parent / "schemas" / "einvoice.xsd"
XML_VERSION = "1.0"
TAX_BUREAU_NAMES = {
    "11": "国家税务总局北京市税务局",
    "31": "国家税务总局上海市税务局",
}


def _sub(parent: Any, tag: str, text: object = None) -> Any:
    child = etree.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def render_xml(invoice: SignedInvoice) -> bytes:
    p = invoice.payload
    root = etree.Element("EInvoice")
    header = _sub(root, "Header")
    _sub(header, "EIid", invoice.number)
    _sub(header, "EInvoiceTag", "SWEI" + p["number"][2:4] + "00")
    _sub(header, "Version", XML_VERSION)
    labels = _sub(header, "InherentLabel")
    kind = _sub(labels, "EInvoiceType")
    _sub(kind, "LabelCode", p["platform_kind"])
    _sub(kind, "LabelName", invoice.title)
    data = _sub(root, "EInvoiceData")
    seller = _sub(data, "SellerInformation")
    _sub(seller, "SellerIdNum", p["seller"]["tax_id"])
    _sub(seller, "SellerName", p["seller"]["name"])
    _sub(seller, "SellerAddr", p["seller"]["address"])
    _sub(seller, "SellerBankName", p["seller"]["bank"])
    buyer = _sub(data, "BuyerInformation")
    _sub(buyer, "BuyerIdNum", p["buyer"]["tax_id"])
    _sub(buyer, "BuyerName", p["buyer"]["name"])
    _sub(buyer, "BuyerAddr", p["buyer"]["address"])
    _sub(buyer, "BuyerBankName", p["buyer"]["bank"])
    basic = _sub(data, "BasicInformation")
    _sub(basic, "TotalAmWithoutTax", p["total_amount"])
    _sub(basic, "TotalTaxAm", p["total_tax"])
    _sub(basic, "TotalTax-includedAmount", p["total_with_tax"])
    _sub(basic, "TotalTax-includedAmountInChinese", capitals(p["total_with_tax"]))
    _sub(basic, "Drawer", p["issuer"])
    _sub(basic, "RequestTime", p["issue_date"])
    for line in p["lines"]:
        item = _sub(data, "IssuItemInformation")
        _sub(item, "ItemName", line["name"])
        _sub(item, "SpecMod", line["spec"])
        _sub(item, "MeaUnits", line["unit"])
        _sub(item, "Quantity", line["quantity"] or "")
        _sub(item, "UnPrice", line["unit_price"] or "")
        _sub(item, "Amount", line["amount"])
        _sub(item, "TaxRate", line["tax_rate"])
        _sub(item, "ComTaxAm", line["tax"])
        _sub(item, "TaxClassificationCode", line["tax_code"])
    additional = _sub(data, "AdditionalInformation")
    _sub(additional, "Remark", p["remarks"])
    if invoice.is_red:
        _sub(additional, "BlueInvoiceNumber", invoice.blue_number)
    supervision = _sub(root, "TaxSupervisionInfo")
    _sub(supervision, "InvoiceNumber", invoice.number)
    _sub(supervision, "IssueTime", p["issue_date"])
    _sub(supervision, "TaxBureauCode", p["number"][2:4])
    _sub(supervision, "TaxBureauName", TAX_BUREAU_NAMES.get(p["number"][2:4], "国家税务总局"))
    signature = _sub(root, "PiaotongSignature")
    _sub(signature, "Algorithm", "Ed25519")
    _sub(signature, "KeyId", invoice.key_id)
    _sub(signature, "PayloadHash", invoice.payload_hash)
    _sub(signature, "SignatureValue", invoice.signature)
    _sub(signature, "Payload", invoice.payload_base64)
    _sub(signature, "QrText", invoice.qr_text)
    _sub(signature, "SignedQrText", invoice.signed_qr_text)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def capitals(amount: str) -> str:
    from decimal import Decimal

    return to_chinese_capitals(Decimal(amount))


# --- reading ---------------------------------------------------------------------------------

# The visible elements compared with the signed payload, by the field names of `ReadResult`.
VISIBLE_FIELDS: dict[str, str] = {
    "number": "Header/EIid",
    "seller_tax_id": "EInvoiceData/SellerInformation/SellerIdNum",
    "seller_name": "EInvoiceData/SellerInformation/SellerName",
    "buyer_tax_id": "EInvoiceData/BuyerInformation/BuyerIdNum",
    "buyer_name": "EInvoiceData/BuyerInformation/BuyerName",
    "total_amount": "EInvoiceData/BasicInformation/TotalAmWithoutTax",
    "total_tax": "EInvoiceData/BasicInformation/TotalTaxAm",
    "total_with_tax": "EInvoiceData/BasicInformation/TotalTax-includedAmount",
    "total_in_capitals": "EInvoiceData/BasicInformation/TotalTax-includedAmountInChinese",
    "issue_date": "EInvoiceData/BasicInformation/RequestTime",
    "issuer": "EInvoiceData/BasicInformation/Drawer",
    "remarks": "EInvoiceData/AdditionalInformation/Remark",
    "blue_number": "EInvoiceData/AdditionalInformation/BlueInvoiceNumber",
    "kind_name": "Header/InherentLabel/EInvoiceType/LabelName",
}
SIGNATURE_FIELDS: dict[str, str] = {
    "key_id": "PiaotongSignature/KeyId",
    "payload_hash": "PiaotongSignature/PayloadHash",
    "signature": "PiaotongSignature/SignatureValue",
    "payload": "PiaotongSignature/Payload",
    "qr_text": "PiaotongSignature/QrText",
    "signed_qr_text": "PiaotongSignature/SignedQrText",
}
LINE_FIELDS = (
    "ItemName",
    "SpecMod",
    "MeaUnits",
    "Quantity",
    "UnPrice",
    "Amount",
    "TaxRate",
    "ComTaxAm",
)


def parse_xml(data: bytes) -> tuple[dict[str, str], dict[str, str], list[dict[str, str]]]:
    """(visible fields, signature fields, lines) of an invoice XML, or a `RuleViolation`.

    Parsed with defusedxml and DTDs forbidden: no external entities (XXE), no entity expansion
    (billion laughs), no network.
    """
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as error:
        raise RuleViolation(
            "file",
            "xml_forbidden",
            _(
                "The XML declares a DTD or entities (%(what)s), which invoice files never do; "
                "it was not read. Upload the XML exactly as delivered."
            ),
            {"what": type(error).__name__},
        ) from None
    except SafeET.ParseError as error:
        raise RuleViolation(
            "file",
            "xml_malformed",
            _("The XML is not well-formed (%(error)s); it may be truncated or damaged."),
            {"error": str(error)},
        ) from None
    if root.tag != "EInvoice":
        raise RuleViolation(
            "file",
            "xml_not_invoice",
            _("The XML's root element is %(tag)s, not EInvoice: it is not an invoice file."),
            {"tag": str(root.tag)[:60]},
        )
    visible = {name: _text(root, path) for name, path in VISIBLE_FIELDS.items()}
    signature = {name: _text(root, path) for name, path in SIGNATURE_FIELDS.items()}
    lines = [
        {name: (item.findtext(name) or "") for name in LINE_FIELDS}
        for item in root.iterfind("EInvoiceData/IssuItemInformation")
    ]
    return visible, signature, lines


def _text(root: Element, path: str) -> str:
    return (root.findtext(path) or "").strip()
