"""The zh_Hans translation catalog: complete, placeholder-safe, compiled, and actually used.

The .po is parsed by a small reader below (no polib dependency). The committed .mo is checked
against the .po, so editing a translation without recompiling (`msgfmt --check -o django.mo
django.po`) fails here rather than silently showing the old text.
"""

from __future__ import annotations

import ast
import dataclasses
import gettext
import re
from pathlib import Path

import pytest
from django.utils import translation

from piaotong.invoices.choices import InvoiceStatus
from piaotong.lib.errors import RuleViolation
from piaotong.lib.taxid import compose_uscc, validate_uscc

PACKAGE = Path(__file__).resolve().parent.parent
CATALOG_DIR = PACKAGE / "locale" / "zh_Hans" / "LC_MESSAGES"
PO_PATH = CATALOG_DIR / "django.po"
# The project catalog, and the catalogs of apps that keep their own (`<app>/locale/`).
CATALOGS = [PO_PATH, *sorted(PACKAGE.glob("*/locale/zh_Hans/LC_MESSAGES/django.po"))]

# A python-format conversion: %(name)s, %s, %d, %.2f ... but not the literal %%.
PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?[#0\- +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclasses.dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstrs: dict[int, str] = dataclasses.field(default_factory=dict)
    flags: set[str] = dataclasses.field(default_factory=set)
    line: int = 0

    @property
    def is_header(self) -> bool:
        return self.msgid == "" and self.msgctxt is None

    def label(self) -> str:
        return f"django.po:{self.line} {self.msgid!r}"


def _unquote(text: str) -> str:
    text = text.strip()
    assert text.startswith('"') and text.endswith('"'), text
    return str(ast.literal_eval(text))


def parse_po(path: Path) -> list[Entry]:
    """Read the entries of a PO file: keywords, continuation lines, flags; obsolete #~ skipped."""
    entries: list[Entry] = []
    entry: Entry | None = None
    field: tuple[str, int | None] | None = None
    pending_flags: set[str] = set()

    def start(line_no: int) -> Entry:
        nonlocal entry, pending_flags
        if entry is None or field is None or field[0] == "msgstr":
            entry = Entry(flags=pending_flags, line=line_no)
            entries.append(entry)
            pending_flags = set()
        return entry

    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#,"):
            pending_flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith("#"):
            continue
        if line.startswith('"'):
            assert entry is not None and field is not None, f"stray string at line {line_no}"
            _append(entry, field, _unquote(line))
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgctxt":
            current: Entry | None = start(line_no)
            field = ("msgctxt", None)
            current.msgctxt = ""
        elif keyword == "msgid":
            current = entry if field is not None and field[0] == "msgctxt" else start(line_no)
            assert current is not None
            field = ("msgid", None)
        elif keyword == "msgid_plural":
            assert entry is not None
            field = ("msgid_plural", None)
            entry.msgid_plural = ""
        elif keyword.startswith("msgstr"):
            assert entry is not None
            index = int(keyword[7:-1]) if keyword.startswith("msgstr[") else 0
            field = ("msgstr", index)
            entry.msgstrs.setdefault(index, "")
        else:
            raise AssertionError(f"unexpected line {line_no}: {raw!r}")
        assert entry is not None and field is not None
        _append(entry, field, _unquote(rest))
    return entries


def _append(entry: Entry, field: tuple[str, int | None], text: str) -> None:
    name, index = field
    if name == "msgstr":
        assert index is not None
        entry.msgstrs[index] += text
    else:
        setattr(entry, name, (getattr(entry, name) or "") + text)


def placeholders(text: str) -> list[str]:
    """The conversions of a format string, sorted; the literal %% is not one."""
    return sorted(match.group(0) for match in PLACEHOLDER.finditer(text.replace("%%", "")))


@pytest.fixture(scope="module", params=CATALOGS, ids=lambda p: str(p.relative_to(PACKAGE)))
def catalog(request: pytest.FixtureRequest) -> Path:
    return Path(request.param)


@pytest.fixture(scope="module")
def entries(catalog: Path) -> list[Entry]:
    return parse_po(catalog)


@pytest.fixture(scope="module")
def messages(entries: list[Entry]) -> list[Entry]:
    return [entry for entry in entries if not entry.is_header]


def test_it_parses_a_catalog_of_real_size() -> None:
    messages = [entry for entry in parse_po(PO_PATH) if not entry.is_header]
    assert len(messages) > 200
    assert len({(entry.msgctxt, entry.msgid) for entry in messages}) == len(messages)


def test_it_declares_chinese_with_a_single_plural_form(entries: list[Entry]) -> None:
    header = entries[0]
    assert header.is_header
    fields = dict(line.split(": ", 1) for line in header.msgstrs[0].splitlines() if ": " in line)
    assert fields["Language"] == "zh_Hans"
    assert fields["Project-Id-Version"] == "piaotong"
    assert fields["Content-Type"] == "text/plain; charset=UTF-8"
    assert fields["Plural-Forms"] == "nplurals=1; plural=0;"
    assert "fuzzy" not in header.flags


def test_it_translates_every_message(messages: list[Entry]) -> None:
    untranslated = [
        entry.label()
        for entry in messages
        if not entry.msgstrs or not all(text.strip() for text in entry.msgstrs.values())
    ]
    assert untranslated == []


def test_it_has_no_fuzzy_entry(messages: list[Entry]) -> None:
    assert [entry.label() for entry in messages if "fuzzy" in entry.flags] == []


def test_it_has_exactly_one_plural_form_per_plural_message(messages: list[Entry]) -> None:
    wrong = [
        entry.label()
        for entry in messages
        if entry.msgid_plural is not None and sorted(entry.msgstrs) != [0]
    ]
    assert wrong == []


def test_it_keeps_the_placeholders_of_every_message(messages: list[Entry]) -> None:
    mismatched = []
    for entry in messages:
        for text in entry.msgstrs.values():
            wanted = placeholders(entry.msgid)
            if entry.msgid_plural is not None:
                # One Chinese form serves both; it may use either English form's placeholders.
                allowed = {tuple(wanted), tuple(placeholders(entry.msgid_plural))}
                if tuple(placeholders(text)) not in allowed:
                    mismatched.append(entry.label())
            elif placeholders(text) != wanted:
                mismatched.append(entry.label())
    assert mismatched == []


def test_it_formats_every_python_format_translation(messages: list[Entry]) -> None:
    broken = []
    for entry in messages:
        if "python-format" not in entry.flags:
            continue
        names = set(re.findall(r"%\((\w+)\)", entry.msgid + (entry.msgid_plural or "")))
        params = dict.fromkeys(names, "1")
        for text in entry.msgstrs.values():
            try:
                text % params
            except (KeyError, TypeError, ValueError) as error:
                broken.append(f"{entry.label()}: {error}")
    assert broken == []


def test_it_keeps_the_compiled_catalog_up_to_date(catalog: Path, messages: list[Entry]) -> None:
    with catalog.with_suffix(".mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for entry in messages:
        if entry.msgid_plural is not None:
            found = compiled.ngettext(entry.msgid, entry.msgid_plural, 1)
            if entry.msgctxt is not None:
                found = compiled.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 1)
        elif entry.msgctxt is not None:
            found = compiled.pgettext(entry.msgctxt, entry.msgid)
        else:
            found = compiled.gettext(entry.msgid)
        if found != entry.msgstrs[0]:
            stale.append(entry.label())
    assert stale == [], "django.mo is stale: run msgfmt --check -o django.mo django.po"


def test_it_shows_invoice_statuses_in_chinese() -> None:
    with translation.override("zh-hans"):
        assert str(InvoiceStatus.ISSUED.label) == "正常"
        assert str(InvoiceStatus.VOIDED.label) == "作废"
    with translation.override("en"):
        assert str(InvoiceStatus.ISSUED.label) == "Issued (正常)"


def test_it_explains_a_mistyped_credit_code_in_chinese() -> None:
    valid = compose_uscc("9", "1", "110108", "MA01TEXT")
    mistyped = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    with translation.override("zh-hans"), pytest.raises(RuleViolation) as raised:
        validate_uscc(mistyped)
    assert raised.value.code == "uscc_check_char"
    with translation.override("zh-hans"):
        chinese = raised.value.text()
    with translation.override("en"):
        english = raised.value.text()
    assert CJK.search(chinese) and "营业执照" in chinese
    assert CJK.search(english) is None and "business licence" in english


def test_it_fills_parameters_into_translated_messages() -> None:
    with translation.override("zh-hans"), pytest.raises(RuleViolation) as raised:
        validate_uscc("9111010")
    with translation.override("zh-hans"):
        text = raised.value.text()
    assert "7" in text and "18" in text and CJK.search(text)
