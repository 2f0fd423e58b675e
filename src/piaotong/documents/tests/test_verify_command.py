"""`piaotong verify FILE`: offline checks of documents and QR pictures, with exit codes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from piaotong.documents.invoice_xml import render_xml
from piaotong.documents.keyfile import public_key_pem
from piaotong.documents.ofd import render_ofd
from piaotong.documents.pdf import render_pdf
from piaotong.documents.qrimage import qr_png
from piaotong.ledger.keys import node_key


def verify(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("verify", *args, stdout=out, stderr=err)
    return int(exited.value.code), out.getvalue() + err.getvalue()


@pytest.fixture
def key_file(tmp_path) -> str:
    path = tmp_path / "node.pub.pem"
    path.write_text(public_key_pem(node_key().public_key))
    return str(path)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "render"), [("i.pdf", render_pdf), ("i.xml", render_xml), ("i.ofd", render_ofd)]
)
def test_it_says_ok_for_authentic_files_using_the_registry(tmp_path, signed, name, render):
    code, output = verify(write(tmp_path, name, render(signed)))
    assert code == 0, output
    assert f"number: {signed.number}" in output and "total_with_tax: 18009.97" in output
    assert f"key_id: {signed.key_id}" in output and "OK" in output


def test_with_a_key_file_it_needs_no_database(tmp_path, signed_without_db, key_file):
    signed = signed_without_db
    code, output = verify(write(tmp_path, "i.xml", render_xml(signed)), "--key", key_file)
    assert code == 0 and "OK" in output
    code, output = verify(
        write(tmp_path, "q.png", qr_png(signed.signed_qr_text)), "--key", key_file
    )
    assert code == 0 and "OK" in output


def test_it_names_tampered_fields(tmp_path, signed_without_db, key_file):
    forged = render_xml(signed_without_db).replace(b">18009.97<", b">98009.97<")
    code, output = verify(write(tmp_path, "f.xml", forged), "--key", key_file)
    assert code == 1
    assert "TAMPERED" in output and "total_with_tax" in output


def test_a_forged_qr_fails(tmp_path, signed_without_db, key_file):
    forged = signed_without_db.signed_qr_text.replace(",18009.97,", ",18009.98,")
    code, output = verify(write(tmp_path, "f.png", qr_png(forged)), "--key", key_file)
    assert code == 1 and "TAMPERED: signature" in output


def test_it_cannot_check_unknown_keys_or_unreadable_files(tmp_path, signed_without_db):
    from piaotong.lib import signing

    other = tmp_path / "other.pub"
    other.write_text(public_key_pem(signing.public_key_bytes(signing.generate_private_key())))
    code, output = verify(
        write(tmp_path, "i.xml", render_xml(signed_without_db)), "--key", str(other)
    )
    assert code == 2 and "UNCHECKED" in output
    code, output = verify(write(tmp_path, "junk.pdf", b"%PDF-1.4 junk"), "--key", str(other))
    assert code == 2 and "UNREADABLE" in output
    code, output = verify(str(tmp_path / "missing.pdf"), "--key", str(other))
    assert code == 2
