"""Auxiliary pictures that cannot take a result down with them: a picture whose drawing fails becomes a
picture of its own error, in the place it would have filled, and the galleries, table and export of the same
retrieval are shown as usual (issue 19: a 1-px histogram bar once discarded a successful search)."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger("react_explorer.ui")
ERROR_BACKGROUND = (253, 236, 234)
ERROR_INK = (150, 30, 20)
WRAP_CHARS = 60


def error_picture(title: str, message: str, width: int = 520, height: int = 140) -> Image.Image:
    """A plain picture that says which picture failed and why."""
    image = Image.new("RGB", (width, height), ERROR_BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    lines = [f"{title} could not be drawn:", *textwrap.wrap(message or "unknown error", WRAP_CHARS)[:6]]
    for number, line in enumerate(lines):
        draw.text((10, 34 + 16 * number), line, fill=ERROR_INK, font=font)
    return image


def picture_or_error(title: str, draw: Callable[[], Image.Image]) -> Image.Image:
    """``draw()``, or an ``error_picture`` when it raises anything (logged with its traceback: it is a bug)."""
    try:
        return draw()
    except Exception as exc:  # noqa: BLE001 - any drawing failure is contained to its own picture
        log.warning("the %s could not be drawn: %s", title, exc, exc_info=exc)
        return error_picture(title, f"{type(exc).__name__}: {exc}")
