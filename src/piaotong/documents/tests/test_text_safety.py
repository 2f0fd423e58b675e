"""User-supplied text is printed literally in every document, never read as markup.

Invoice fields refuse "<" and ">" at entry, but organisation names and addresses, imported and
legacy data may carry "&", quotes and tags. reportlab's `drawString` (used by `pdf.py`) does not
interpret markup, unlike `Paragraph`; lxml escapes text in the OFD and XML parts. These tests
keep it so: a markup-reading API, or a hand-made XML string, would fail them.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from lxml import etree
from pypdf import PdfReader

from piaotong.documents.content import SignedInvoice, build_signed_invoice
from piaotong.documents.fonts import subset_ttf
from piaotong.documents.invoice_xml import render_xml
from piaotong.documents.ofd import NS, read_ofd, render_ofd
from piaotong.documents.pdf import render_pdf
from piaotong.ledger.keys import node_key
from piaotong.lib import signing
from piaotong.lib.canonical import canonical_json

from .test_render import pdf_text

pytestmark = pytest.mark.django_db

SELLER_NAME = 'A&B <b>粗</b> "引"公司'
SELLER_ADDRESS = "<font size=40>大</font> &lt;路&gt;"
BUYER_NAME = "C&amp;D <i>斜</i>'公司"
BUYER_ADDRESS = '<a href="http://x.test">链</a> & <br/>'
ITEM_NAME = "*服务*<u>维</u>&#x41;"
REMARKS = "<para>备注</para> & <!-- x -->"
ISSUER = "张<三>&"
SHOWN = (SELLER_NAME, SELLER_ADDRESS, BUYER_NAME, BUYER_ADDRESS, ITEM_NAME, REMARKS, ISSUER)


@pytest.fixture
def marked_up(signed: SignedInvoice) -> SignedInvoice:
    """`signed` with markup-like text in every field a person or an import supplies."""
    payload: dict[str, Any] = dict(signed.payload)
    payload["seller"] = {**payload["seller"], "name": SELLER_NAME, "address": SELLER_ADDRESS}
    payload["buyer"] = {**payload["buyer"], "name": BUYER_NAME, "address": BUYER_ADDRESS}
    payload["lines"] = [{**payload["lines"][0], "name": ITEM_NAME}, *payload["lines"][1:]]
    payload["remarks"], payload["issuer"] = REMARKS, ISSUER
    key = node_key()
    signature = signing.sign(key.private_key, canonical_json(payload))
    return build_signed_invoice(payload, signature, key.key_id, "", key)


def squeezed(text: str) -> str:
    return "".join(text.split())


def test_the_pdf_prints_markup_in_names_addresses_items_remarks_literally(marked_up):
    data = render_pdf(marked_up)
    text = squeezed(pdf_text(data))
    for shown in SHOWN:
        assert squeezed(shown) in text, shown
    assert PdfReader(io.BytesIO(data)).metadata["/Author"] == SELLER_NAME


def test_the_ofd_prints_markup_literally(marked_up):
    data = render_ofd(marked_up)
    content = read_ofd(data)
    texts = "".join(content.texts)
    for shown in SHOWN:
        assert shown in texts, shown
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        entry = etree.fromstring(package.read("OFD.xml"))
        page = package.read("Doc_0/Pages/Page_0/Content.xml")
    assert entry.findtext(f".//{{{NS}}}Author") == SELLER_NAME
    assert b"<b>" not in page and b"&lt;b&gt;" in page and b"&amp;lt;" in page


def test_the_xml_escapes_markup_and_reads_back_the_same_text(marked_up):
    xml = render_xml(marked_up)
    root = etree.fromstring(xml)
    assert root.findtext("EInvoiceData/SellerInformation/SellerName") == SELLER_NAME
    assert root.findtext("EInvoiceData/SellerInformation/SellerAddr") == SELLER_ADDRESS
    assert root.findtext("EInvoiceData/BuyerInformation/BuyerName") == BUYER_NAME
    assert root.findtext("EInvoiceData/BuyerInformation/BuyerAddr") == BUYER_ADDRESS
    assert root.findtext("EInvoiceData/IssuItemInformation/ItemName") == ITEM_NAME
    assert root.findtext("EInvoiceData/AdditionalInformation/Remark") == REMARKS
    assert root.findtext("EInvoiceData/BasicInformation/Drawer") == ISSUER
    assert b"<b>" not in xml and b"<font" not in xml and b"<!-- x -->" not in xml


def test_the_embedded_ofd_font_holds_the_markup_characters(marked_up):
    from fontTools.ttLib import TTFont

    cmap = TTFont(io.BytesIO(subset_ttf("".join(SHOWN)))).getBestCmap()
    assert all(ord(char) in cmap for char in "".join(SHOWN) if not char.isspace())
