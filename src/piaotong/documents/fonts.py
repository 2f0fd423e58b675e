"""The CJK font embedded in every PDF and OFD: WenQuanYi Micro Hei (文泉驿微米黑).

It comes from the `paperang-p2-fonts-cjk` wheel (Apache-2.0/GPLv3-with-font-exception font),
never from the machine, so every node renders the same glyphs. It has TrueType outlines,
which reportlab embeds as subsets; the OFD writer embeds a subset of exactly the glyphs shown.

OFD subsets are built from a copy of the font parsed once per process (`_SourceFont`): the
glyphs of the text, the glyphs they are composed of (most CJK glyphs of this font are
composites of radicals), their metrics and a new cmap go into a new font with the original
hinting, names and header. fontTools' general subsetter, which parses the whole font (49,531
glyphs) for every document, took about 0.4 s a document; this takes a few milliseconds, as
simple glyphs are compiled once and reused as bytes (a composite glyph names its components by
glyph id, so it is compiled again for each subset's order). Bounding boxes and maxima in the
header stay those of the whole font: they still enclose every glyph kept.
"""

from __future__ import annotations

import copy
import io
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import paperang_p2_fonts_cjk
from fontTools import subset
from fontTools.ttLib import TTCollection, TTFont, newTable
from fontTools.ttLib.tables._c_m_a_p import CmapSubtable
from fontTools.ttLib.tables._g_l_y_f import Glyph
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont as ReportlabTTFont

FONT_NAME = "WenQuanYiMicroHei"
FONT_FAMILY = "WenQuanYi Micro Hei"
FONT_PATH = Path(paperang_p2_fonts_cjk.__file__).parent / "fonts" / "wqy-microhei.ttc"
ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
# Tables copied as they are: header, names, metrics header and the hinting programs the glyphs'
# instructions call. Layout tables (GSUB, GPOS, GDEF), vertical metrics and FFTM are left out.
COPIED_TABLES = ("head", "hhea", "OS/2", "name", "maxp", "cvt ", "fpgm", "prep", "gasp")
# fontTools logs every subsetting step at INFO; one document is not worth forty log lines.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)


@lru_cache(maxsize=1)
def pdf_font() -> str:
    """Register the font with reportlab once per process; return its name."""
    pdfmetrics.registerFont(ReportlabTTFont(FONT_NAME, str(FONT_PATH), subfontIndex=0))
    return FONT_NAME


def subset_ttf(text: str) -> bytes:
    """A TrueType font holding only the glyphs of `text` (plus ASCII): same text, same bytes."""
    return _source_font().subset(set(text + ASCII))


def subset_ttf_with_fonttools(text: str) -> bytes:
    """The same subset made by fontTools' general subsetter (slow: it parses the whole font);
    kept to check `subset_ttf` against."""
    font = TTCollection(str(FONT_PATH), lazy=True).fonts[0]
    options = subset.Options()
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "vhea", "vmtx", "FFTM"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=text + ASCII)
    subsetter.subset(font)
    font.recalcTimestamp = False  # same text, same bytes: documents are content-addressed
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


@lru_cache(maxsize=1)
def _source_font() -> _SourceFont:
    return _SourceFont(FONT_PATH)


class _SourceFont:
    """The font parsed once; `subset` copies the glyphs a text needs into a new font.

    Reading a glyph expands it in place (fontTools does so on access), and writing a font
    compiles the glyphs it holds, so building a subset takes a lock: renderer threads share
    this one copy.
    """

    def __init__(self, path: Path) -> None:
        self.font = TTCollection(str(path), lazy=True).fonts[0]
        self.cmap: dict[int, str] = self.font.getBestCmap()
        self.glyph_ids = {name: gid for gid, name in enumerate(self.font.getGlyphOrder())}
        self.glyf = self.font["glyf"]
        self.metrics = self.font["hmtx"].metrics
        self.tables = {tag: self.font[tag] for tag in COPIED_TABLES}
        self.post = self.font["post"]
        self.compiled: dict[str, bytes] = {}  # simple glyphs, compiled once
        self.lock = threading.Lock()

    def glyph(self, name: str) -> Any:
        """A glyph for a new font: simple ones from their compiled bytes, composites as parsed
        (compiled again against the new glyph order when the font is written)."""
        glyph = self.glyf[name]
        if glyph.isComposite():
            return glyph
        if name not in self.compiled:
            self.compiled[name] = glyph.compile(self.glyf, recalcBBoxes=False)
        return Glyph(self.compiled[name])

    def glyph_names(self, codepoints: list[int]) -> list[str]:
        """.notdef, the glyphs of the code points and every component they use, in font order."""
        names, todo = {".notdef"}, [self.cmap[c] for c in codepoints]
        while todo:
            name = todo.pop()
            if name in names:
                continue
            names.add(name)
            glyph = self.glyf[name]
            if glyph.isComposite():
                todo.extend(component.glyphName for component in glyph.components)
        return sorted(names, key=self.glyph_ids.__getitem__)

    def subset(self, chars: set[str]) -> bytes:
        codepoints = sorted(ord(char) for char in chars if ord(char) in self.cmap)
        with self.lock:
            order = self.glyph_names(codepoints)
            font = TTFont(recalcBBoxes=False, recalcTimestamp=False)
            font.setGlyphOrder(order)
            for tag, table in self.tables.items():
                font[tag] = copy.deepcopy(table)
            font["post"] = self._post()
            font["cmap"] = self._cmap(codepoints)
            glyf = font["glyf"] = newTable("glyf")
            glyf.glyphOrder = order
            glyf.glyphs = {name: self.glyph(name) for name in order}
            font["loca"] = newTable("loca")
            hmtx = font["hmtx"] = newTable("hmtx")
            hmtx.metrics = {name: self.metrics[name] for name in order}
            os2 = font["OS/2"]
            os2.usFirstCharIndex = min(codepoints[0], 0xFFFF) if codepoints else 0
            os2.usLastCharIndex = min(codepoints[-1], 0xFFFF) if codepoints else 0
            out = io.BytesIO()
            font.save(out)
        return out.getvalue()

    def _post(self) -> Any:
        post = copy.copy(self.post)
        post.formatType = 3.0  # no glyph names, as fontTools' subsetter writes by default
        for name in ("extraNames", "mapping", "glyphOrder"):
            post.__dict__.pop(name, None)
        return post

    def _cmap(self, codepoints: list[int]) -> Any:
        cmap = newTable("cmap")
        cmap.tableVersion = 0
        mapping = {c: self.cmap[c] for c in codepoints}
        cmap.tables = []
        bmp = {c: name for c, name in mapping.items() if c <= 0xFFFF}
        for fmt, platform, encoding, chars in (
            (4, 3, 1, bmp),
            (12, 3, 10, mapping if len(bmp) < len(mapping) else None),
        ):
            if chars is None:
                continue
            table = CmapSubtable.newSubtable(fmt)
            table.platformID, table.platEncID, table.language = platform, encoding, 0
            table.cmap = chars
            cmap.tables.append(table)
        return cmap
