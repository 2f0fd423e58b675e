"""Rendering: the PDF, XML and OFD of an issued invoice show and sign the same facts."""

from __future__ import annotations

import io
import shutil
import subprocess
import zipfile

import pytest
from lxml import etree
from pypdf import PdfReader

from piaotong.documents.invoice_xml import SCHEMA_PATH, render_xml
from piaotong.documents.ofd import NS, read_ofd, render_ofd
from piaotong.documents.pdf import render_pdf

from .conftest import red_signed

pytestmark = pytest.mark.django_db


def pdf_text(data: bytes) -> str:
    """Text as a person's PDF tool extracts it: pdftotext when installed, else pypdf."""
    tool = shutil.which("pdftotext")
    if tool:
        done = subprocess.run(  # noqa: S603 - fixed arguments, our own PDF on stdin
            [tool, "-layout", "-", "-"], input=data, capture_output=True, check=True
        )
        return done.stdout.decode()
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def embedded_fonts(data: bytes) -> list[str]:
    names = []
    for page in PdfReader(io.BytesIO(data)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            for descendant in font.get("/DescendantFonts", [font]):
                descriptor = descendant.get_object().get("/FontDescriptor")
                if descriptor and "/FontFile2" in descriptor.get_object():
                    names.append(str(font["/BaseFont"]))
    return names


def test_it_renders_a_pdf_like_a_special_invoice(signed):
    data = render_pdf(signed)
    text = "".join(pdf_text(data).split())
    for shown in (
        "电子发票（增值税专用发票）",
        f"发票号码：{signed.number}",
        "北京测试科技有限公司",
        signed.payload["buyer"]["tax_id"],
        "*信息技术服务*软件维护费",
        "*计算机*笔记本电脑",
        "¥18009.97",
        "壹万捌仟零玖圆玖角柒分",
        "合同号HT-2026-001",
        "开票人：",
    ):
        assert shown in text, shown
    assert "红字" not in text


def test_it_embeds_the_cjk_font_in_the_pdf(signed):
    fonts = embedded_fonts(render_pdf(signed))
    assert fonts and all("WenQuanYiMicroHei" in name for name in fonts)


def test_it_attaches_the_signed_xml_to_the_pdf(signed):
    reader = PdfReader(io.BytesIO(render_pdf(signed)))
    assert reader.attachments["invoice.xml"][0] == render_xml(signed)


def test_it_marks_red_invoices_and_names_the_blue_one(signed):
    red = red_signed(signed)
    text = "".join(pdf_text(render_pdf(red)).split())
    assert "红字" in text
    assert f"被红冲蓝字数电发票号码：{signed.number}" in text
    assert "¥-18009.97" in text and "（负数）壹万捌仟零玖圆玖角柒分" in text
    assert f"<BlueInvoiceNumber>{signed.number}</BlueInvoiceNumber>" in render_xml(red).decode()


def test_the_xml_is_valid_against_the_schema(signed):
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
    for doc in (render_xml(signed), render_xml(red_signed(signed))):
        tree = etree.fromstring(doc)
        assert schema.validate(tree), schema.error_log
    tree = etree.fromstring(render_xml(signed))
    assert tree.findtext("Header/EIid") == signed.number
    assert tree.findtext("EInvoiceData/BasicInformation/TotalTax-includedAmount") == "18009.97"
    assert len(tree.findall("EInvoiceData/IssuItemInformation")) == 2


def test_the_schema_refuses_a_broken_xml(signed):
    schema = etree.XMLSchema(etree.parse(str(SCHEMA_PATH)))
    tree = etree.fromstring(render_xml(signed))
    tree.find("EInvoiceData/BasicInformation/TotalTaxAm").text = "1.005"
    assert not schema.validate(tree)


def test_it_writes_a_minimal_ofd_package_and_reads_it_back(signed):
    data = render_ofd(signed)
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        names = set(package.namelist())
        entry = etree.fromstring(package.read("OFD.xml"))
        document = etree.fromstring(package.read("Doc_0/Document.xml"))
        public = etree.fromstring(package.read("Doc_0/PublicRes.xml"))
        font_name = public.find(f".//{{{NS}}}FontFile").text
        font = package.read(f"Doc_0/Res/{font_name}")
    assert {
        "OFD.xml",
        "Doc_0/Document.xml",
        "Doc_0/PublicRes.xml",
        "Doc_0/DocumentRes.xml",
        "Doc_0/Pages/Page_0/Content.xml",
        "Doc_0/Attachs/invoice.xml",
    } <= names
    assert entry.tag == f"{{{NS}}}OFD" and entry.get("Version") == "1.0"
    assert entry.findtext(f"{{{NS}}}DocBody/{{{NS}}}DocRoot") == "Doc_0/Document.xml"
    assert (
        document.findtext(f"{{{NS}}}CommonData/{{{NS}}}PageArea/{{{NS}}}PhysicalBox")
        == "0 0 241 150"
    )
    assert font[:4] == b"\x00\x01\x00\x00" and len(font) < 200_000
    content = read_ofd(data)
    assert content.invoice_xml == render_xml(signed)
    joined = "".join(content.texts)
    assert f"发票号码：{signed.number}" in joined and "壹万捌仟零玖圆玖角柒分" in joined
    assert content.custom_data["价税合计"] == "18009.97"


def test_the_ofd_font_holds_every_glyph_it_shows(signed):
    from fontTools.ttLib import TTFont

    data = render_ofd(signed)
    with zipfile.ZipFile(io.BytesIO(data)) as package:
        font_file = next(n for n in package.namelist() if n.endswith(".ttf"))
        cmap = TTFont(io.BytesIO(package.read(font_file))).getBestCmap()
    shown = "".join(read_ofd(data).texts)
    assert {ch for ch in shown if ord(ch) not in cmap} == set()


def test_rendering_is_deterministic(signed):
    assert render_xml(signed) == render_xml(signed)
    assert render_ofd(signed) == render_ofd(signed)
