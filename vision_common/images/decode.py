"""Decode untrusted image bytes into an RGB :class:`LoadedImage`, enforcing :class:`ImageLimits` in order:

1. byte count (before anything is parsed);
2. format, from the header only, restricted to ``allowed_formats`` so other Pillow parsers never run;
3. width*height against ``max_pixels`` from the header, before a single pixel is decoded;
4. pixel decoding, with truncation and corruption mapped to typed errors;
5. first frame of animations, EXIF orientation, conversion to 8-bit RGB.

Every failure is an :class:`ImageInputError`; Pillow exceptions never escape.
"""

from __future__ import annotations

import io
import re
import struct
import zlib

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from vision_common.images.limits import ImageInputError, ImageLimits, LoadedImage, format_bytes
from vision_common.images.modes import to_rgb

# What Pillow raises from inside its parsers and decoders on malformed input. Warning: Pillow warns about some
# damage (e.g. TIFF "Truncated File Read"); under ``-W error`` that warning arrives here as an exception.
_PARSE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    struct.error,
    zlib.error,
    Warning,
)
# Phrases in Pillow's messages that mean "the data stops early" rather than "the data is wrong".
_TRUNCATION_HINTS = (
    "truncat",
    "incomplete",
    "requires a buffer",
    "end of file",
    "premature",
    "not enough data",
)
_ORIENTATION_ACTIONS = {
    2: "mirrored",
    3: "rotated",
    4: "mirrored",
    5: "mirrored and rotated",
    6: "rotated",
    7: "mirrored and rotated",
    8: "rotated",
}
_PAGED_FORMATS = frozenset({"TIFF", "MPO"})  # several pictures that are pages, not animation frames


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _looks_truncated(exc: BaseException) -> bool:
    message = _reason(exc).lower()
    return isinstance(exc, (EOFError, struct.error)) or any(hint in message for hint in _TRUNCATION_HINTS)


def _bomb_error(pixels: int | None, size: tuple[int, int] | None, limits: ImageLimits, source: str):
    limit = f"the limit is {limits.max_pixels:,} (ImageLimits.max_pixels)"
    if pixels is None:
        return ImageInputError(
            "decompression_bomb", f"image declares too many pixels; {limit}", source=source
        )
    dims = f" ({size[0]:,}x{size[1]:,})" if size else ""
    return ImageInputError("decompression_bomb", f"image is {pixels:,} pixels{dims}; {limit}", source=source)


def _check_byte_count(size: int, limits: ImageLimits, source: str) -> None:
    if size == 0:
        raise ImageInputError("empty_file", "the file is empty (0 bytes)", source=source)
    if size > limits.max_bytes:
        raise ImageInputError(
            "too_large",
            f"file is {format_bytes(size)}; the limit is {format_bytes(limits.max_bytes)} (ImageLimits.max_bytes)",
            source=source,
        )


def _accepts(accept, head: bytes) -> bool:
    """A plugin's magic-byte check; some raise on prefixes shorter than they expect."""
    try:
        return accept is not None and bool(accept(head))
    except _PARSE_ERRORS:
        return False


def _explain_unidentified(data: bytes, limits: ImageLimits, source: str) -> ImageInputError:
    """Pillow only says "cannot identify image file"; find out whether it is a broken allowed image, an image
    in a format we refuse, or not an image at all. Uses each plugin's magic-byte check (``accept``), and
    for allowed formats re-runs only that plugin's header parser to recover its reason."""
    head = data[:16]  # the prefix Image.open hands to every accept()
    for fmt in limits.allowed_formats:
        factory, accept = Image.OPEN.get(fmt, (None, None))
        if not _accepts(accept, head):
            continue
        try:
            factory(io.BytesIO(data), None)
        except Exception as exc:  # noqa: BLE001 - any parser failure is the reason we report
            code = "truncated" if _looks_truncated(exc) else "not_an_image"
            return ImageInputError(
                code, f"starts like a {fmt} image but its header is invalid: {_reason(exc)}", source=source
            )
        return ImageInputError(
            "not_an_image", f"starts like a {fmt} image but could not be opened", source=source
        )
    for fmt, (_factory, accept) in Image.OPEN.items():
        if fmt not in limits.allowed_formats and _accepts(accept, head):
            allowed = ", ".join(limits.allowed_formats)
            return ImageInputError(
                "unsupported_format",
                f"{fmt} images are not accepted; allowed formats: {allowed} (ImageLimits.allowed_formats)",
                source=source,
            )
    return ImageInputError(
        "not_an_image", f"not a recognised image file (it starts with {head[:8]!r})", source=source
    )


def _open_header(data: bytes, limits: ImageLimits, source: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=limits.allowed_formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own global guard fired first (headers far beyond ours); report it with our limit.
        match = re.search(r"\((\d+) pixels\)", str(exc))
        raise _bomb_error(int(match.group(1)) if match else None, None, limits, source) from exc
    except UnidentifiedImageError:
        raise _explain_unidentified(data, limits, source) from None
    except _PARSE_ERRORS as exc:
        code = "truncated" if _looks_truncated(exc) else "not_an_image"
        raise ImageInputError(
            code, f"could not read the image header: {_reason(exc)}", source=source
        ) from exc


def _check_geometry(size: tuple[int, int], limits: ImageLimits, source: str) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise _bomb_error(width * height, size, limits, source)
    if min(width, height) < limits.min_side:
        raise ImageInputError(
            "too_small",
            f"image is {width}x{height}; each side must be at least {limits.min_side} (ImageLimits.min_side)",
            source=source,
        )
    ratio = max(width, height) / min(width, height)
    if limits.max_aspect_ratio is not None and ratio > limits.max_aspect_ratio:
        raise ImageInputError(
            "extreme_aspect_ratio",
            f"image is {width}x{height}, an aspect ratio of {ratio:.1f}:1; the limit is "
            f"{limits.max_aspect_ratio:g}:1 (ImageLimits.max_aspect_ratio)",
            source=source,
        )


def _frame_notice(image: Image.Image, fmt: str, source: str) -> tuple[str, ...]:
    """Count frames (header walk only, bounded by the byte limit) and stay on the first one."""
    try:
        if not getattr(image, "is_animated", False):
            return ()
        frames = int(getattr(image, "n_frames", 1))
        image.seek(0)
    except _PARSE_ERRORS as exc:
        code = "truncated" if _looks_truncated(exc) else "not_an_image"
        raise ImageInputError(code, f"could not read the frames: {_reason(exc)}", source=source) from exc
    if fmt in _PAGED_FORMATS:
        return (f"multi-page {fmt}: using the first of {frames} pages",)
    return (f"animated {fmt}: using the first of {frames} frames",)


def _decode_pixels(image: Image.Image, fmt: str, source: str) -> None:
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageInputError("decompression_bomb", f"rejected while decoding: {exc}", source=source) from exc
    except _PARSE_ERRORS as exc:
        reason = _reason(exc)
        if "decompressed data too large" in reason.lower():
            # PNG text/ICC chunks that inflate past Pillow's per-chunk cap: a bomb in metadata.
            raise ImageInputError(
                "decompression_bomb", f"metadata expands too far: {reason}", source=source
            ) from exc
        if _looks_truncated(exc):
            raise ImageInputError(
                "truncated", f"the {fmt} file is truncated: {reason}", source=source
            ) from exc
        raise ImageInputError(
            "not_an_image", f"the {fmt} pixel data is corrupt: {reason}", source=source
        ) from exc


def _orient(image: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    """Apply EXIF orientation; always returns a new image, detached from the source file."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except _PARSE_ERRORS:
        return image.copy(), ("EXIF data unreadable: orientation ignored",)
    if orientation not in _ORIENTATION_ACTIONS:
        return image.copy(), ()
    oriented = ImageOps.exif_transpose(image)
    return oriented, (f"{_ORIENTATION_ACTIONS[orientation]} per EXIF orientation {orientation}",)


def decode_opened(image: Image.Image, limits: ImageLimits, *, source: str, fmt: str) -> LoadedImage:
    """Steps 3-5 for an image whose header is parsed but whose pixels may not be decoded yet."""
    original_size, original_mode = image.size, image.mode
    _check_geometry(original_size, limits, source)
    notices = _frame_notice(image, fmt, source)
    _decode_pixels(image, fmt, source)
    oriented, orientation_notices = _orient(image)
    try:
        rgb, mode_notices = to_rgb(oriented)
    except ValueError as exc:
        raise ImageInputError("unsupported_format", str(exc), source=source) from exc
    return LoadedImage(
        image=rgb,
        original_size=original_size,
        original_mode=original_mode,
        format=fmt,
        notices=notices + orientation_notices + mode_notices,
    )


def load_image_bytes(data: bytes, limits: ImageLimits, *, source: str) -> LoadedImage:
    """Decode encoded image ``data`` (an upload, a file's contents, a decoded data URL) under ``limits``.

    ``source`` names the input in error messages and logs (a file name, ``"<upload>"``, a URL).
    Raises :class:`ImageInputError`; never a Pillow exception.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageInputError("bad_reference", f"expected bytes, got {type(data).__name__}", source=source)
    data = bytes(data)
    _check_byte_count(len(data), limits, source)
    image = _open_header(data, limits, source)
    try:
        return decode_opened(image, limits, source=source, fmt=image.format or "unknown")
    finally:
        image.close()


def load_pil_image(image: Image.Image, limits: ImageLimits, *, source: str = "<PIL image>") -> LoadedImage:
    """Validate and normalise an already-opened PIL image (e.g. from a UI component) like decoded bytes.

    The byte limit cannot apply, but the pixel limit, format list, frame, orientation and mode rules do.
    The caller's image is not copied over or converted in place; an animation is left on its first frame.
    """
    fmt = image.format
    if fmt is not None and fmt not in limits.allowed_formats:
        allowed = ", ".join(limits.allowed_formats)
        raise ImageInputError(
            "unsupported_format",
            f"{fmt} images are not accepted; allowed formats: {allowed} (ImageLimits.allowed_formats)",
            source=source,
        )
    return decode_opened(image, limits, source=source, fmt=fmt or "in-memory")
