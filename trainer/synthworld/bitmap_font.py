"""The project's own 5x7 bitmap font for 0-9 and A-Z, drawn with integer scaling.

Text is rasterised from these bitmaps rather than a system font, so sign codes render byte-identically on
every machine and the exact ink layout of each glyph is known (the small-detail tests read it back).
"""

from __future__ import annotations

import numpy as np

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7
# Blank font columns between characters, before scaling.
GLYPH_SPACING = 1

_GLYPH_ROWS: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "A": ("..#..", ".#.#.", "#...#", "#...#", "#####", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
}


def _bitmap(rows: tuple[str, ...]) -> np.ndarray:
    return np.array([[cell == "#" for cell in row] for row in rows], dtype=bool)


def glyph(char: str) -> np.ndarray:
    """The 7x5 boolean ink mask of ``char`` (True = ink)."""
    if char not in _GLYPH_ROWS:
        raise ValueError(f"bitmap font has no glyph for {char!r}; supported: 0-9 and A-Z")
    return _bitmap(_GLYPH_ROWS[char])


def supported_chars() -> str:
    return "".join(_GLYPH_ROWS)


def text_size(text: str, scale: int) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn at integer ``scale``."""
    if scale < 1:
        raise ValueError(f"font scale must be a positive integer, got {scale}")
    if not text:
        return 0, 0
    columns = len(text) * GLYPH_WIDTH + (len(text) - 1) * GLYPH_SPACING
    return columns * scale, GLYPH_HEIGHT * scale


def text_mask(text: str, scale: int) -> np.ndarray:
    """Boolean ink mask of shape (7*scale, width) for ``text``: each font cell becomes a scale x scale block."""
    width, height = text_size(text, scale)
    mask = np.zeros((height // scale, width // scale), dtype=bool)
    for index, char in enumerate(text):
        left = index * (GLYPH_WIDTH + GLYPH_SPACING)
        mask[:, left : left + GLYPH_WIDTH] = glyph(char)
    return np.kron(mask, np.ones((scale, scale), dtype=bool)).astype(bool)


def char_origin(index: int, scale: int) -> int:
    """Pixel x offset of character ``index`` from the start of the text (for reading glyphs back)."""
    return index * (GLYPH_WIDTH + GLYPH_SPACING) * scale
