"""The OFD font subset: built from the font parsed once, it must hold exactly what fontTools'
general subsetter would put in, glyph for glyph."""

from __future__ import annotations

import io

from fontTools.pens.recordingPen import DecomposingRecordingPen
from fontTools.ttLib import TTFont

from piaotong.documents.fonts import subset_ttf, subset_ttf_with_fonttools

TEXT = "电子发票（增值税专用发票）北京测试科技有限公司¥壹万捌仟零玖圆玖角柒分★※、。：；"


def outlines(data: bytes) -> dict[int, tuple[int, list[object]]]:
    font = TTFont(io.BytesIO(data))
    glyphs = font.getGlyphSet()
    drawn = {}
    for codepoint, name in font.getBestCmap().items():
        pen = DecomposingRecordingPen(glyphs)
        glyphs[name].draw(pen)
        drawn[codepoint] = (glyphs[name].width, pen.value)
    return drawn


def test_the_subset_draws_every_character_as_the_general_subsetter_does():
    fast, general = outlines(subset_ttf(TEXT)), outlines(subset_ttf_with_fonttools(TEXT))
    assert set(fast) >= {ord(char) for char in TEXT}
    assert fast == general


def test_the_subset_is_a_truetype_font_with_the_hinting_and_without_layout_tables():
    font = TTFont(io.BytesIO(subset_ttf(TEXT)))
    assert font.sfntVersion == "\x00\x01\x00\x00"
    assert {"fpgm", "prep", "cvt ", "glyf", "loca", "hmtx", "name"} <= set(font.keys())
    assert not {"GSUB", "GPOS", "GDEF", "vmtx"} & set(font.keys())
    assert font["maxp"].numGlyphs == len(font.getGlyphOrder()) < 400


def test_the_same_text_gives_the_same_bytes():
    assert subset_ttf(TEXT) == subset_ttf("".join(reversed(TEXT)))
