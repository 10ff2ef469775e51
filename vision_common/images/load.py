"""Safe image input for chat: the one door every image passes through before reaching the model.

Gradio uploads, OpenAI-API ``image_url`` parts and CLI ``--image`` all call :func:`load_image` (or one of the
specific loaders). Anything wrong with the input raises :class:`ImageInputError` with a ``code`` and a message
a user can act on, so a server can answer 4xx and keep serving. See ``docs/image_input.md``.

CLI, to check files the way the app would::

    python -m vision_common.images.load photo.jpg data/*.png --max-pixels 20000000
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from PIL import Image

from vision_common.images.decode import load_image_bytes, load_pil_image
from vision_common.images.limits import ImageInputError, ImageLimits, LoadedImage
from vision_common.images.sources import load_image_data_url, load_image_path, load_image_url, shorten

__all__ = [
    "ImageInputError",
    "ImageLimits",
    "LoadedImage",
    "load_image",
    "load_image_bytes",
    "load_image_data_url",
    "load_image_path",
    "load_image_url",
    "load_pil_image",
    "to_data_url",
]

_DATA_URL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

ImageRef = Image.Image | LoadedImage | bytes | bytearray | memoryview | str | os.PathLike


def load_image(ref: ImageRef, limits: ImageLimits) -> LoadedImage:
    """Load any image reference: a PIL image, encoded bytes, a path, or a ``data:``, ``file://`` or
    ``http(s)://`` URL. Strings that are not URLs are paths (raw base64 is not guessed at)."""
    if isinstance(ref, LoadedImage):
        return ref
    if isinstance(ref, Image.Image):
        return load_pil_image(ref, limits)
    if isinstance(ref, (bytes, bytearray, memoryview)):
        return load_image_bytes(ref, limits, source="<upload>")
    if isinstance(ref, os.PathLike):
        return load_image_path(ref, limits)
    if not isinstance(ref, str):
        raise ImageInputError(
            "bad_reference", f"cannot load an image from a {type(ref).__name__}", source="<input>"
        )
    if not ref.strip():
        raise ImageInputError("bad_reference", "the image reference is empty", source="<input>")
    lowered = ref[:8].lower()
    if lowered.startswith("data:"):
        return load_image_data_url(ref, limits)
    if lowered.startswith(("http://", "https://")):
        return load_image_url(ref, limits)
    if lowered.startswith("file:"):
        try:
            parts = urlsplit(ref)
        except ValueError as exc:
            raise ImageInputError("bad_url", f"malformed file URL: {exc}", source=shorten(ref)) from exc
        if parts.netloc not in ("", "localhost"):
            raise ImageInputError("bad_url", "file:// URLs must name a local file", source=shorten(ref))
        return load_image_path(url2pathname(parts.path), limits)
    if _URL_SCHEME.match(ref):
        scheme = ref.split(":", 1)[0]
        raise ImageInputError(
            "bad_url", f"unsupported URL scheme {scheme!r}; use http(s), file or data", source=shorten(ref)
        )
    return load_image_path(ref, limits)


def to_data_url(image: Image.Image | LoadedImage, format: str = "PNG", *, quality: int = 90) -> str:
    """Encode ``image`` as a ``data:image/...;base64,`` URL for OpenAI-compatible servers (PNG is lossless;
    JPEG/WEBP use ``quality``)."""
    pil = image.image if isinstance(image, LoadedImage) else image
    fmt = format.upper()
    if fmt not in _DATA_URL_FORMATS:
        raise ValueError(f"to_data_url: format must be one of {sorted(_DATA_URL_FORMATS)}, got {format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"to_data_url: quality must be 1..100, got {quality}")
    if pil.mode not in ("RGB", "L") and not (fmt != "JPEG" and pil.mode == "RGBA"):
        pil = pil.convert("RGB")
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    pil.save(buffer, fmt, **options)
    return f"data:{_DATA_URL_FORMATS[fmt]};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = ImageLimits()
    parser = argparse.ArgumentParser(
        prog="python -m vision_common.images.load",
        description="Check images the way the chat app loads them; prints size, format and notices or the error.",
    )
    parser.add_argument("refs", nargs="+", help="paths, file://, data: or http(s):// URLs")
    parser.add_argument("--max-bytes", type=int, default=defaults.max_bytes)
    parser.add_argument("--max-pixels", type=int, default=defaults.max_pixels)
    parser.add_argument("--max-aspect-ratio", type=float, default=None)
    parser.add_argument("--local-root", type=Path, default=None, help="only allow paths inside this folder")
    parser.add_argument("--allow-remote-urls", action="store_true", help="fetch http(s) URLs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status 0 when every reference loads, 1 when any is rejected, 2 on bad options."""
    args = _parse_args(argv)
    try:
        limits = ImageLimits(
            max_bytes=args.max_bytes,
            max_pixels=args.max_pixels,
            max_aspect_ratio=args.max_aspect_ratio,
            local_root=args.local_root,
            allow_remote_urls=args.allow_remote_urls,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    for ref in args.refs:
        try:
            loaded = load_image(ref, limits)
        except ImageInputError as exc:
            failures += 1
            print(f"REJECTED [{exc.code}] {exc}")
            continue
        width, height = loaded.image.size
        notes = "; ".join(loaded.notices)
        print(f"ok {shorten(ref)}: {loaded.format} {width}x{height}" + (f" ({notes})" if notes else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
