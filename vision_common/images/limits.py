"""Limits, errors and the result type for safe image input (see ``docs/image_input.md``).

Every image that reaches the chat model goes through :mod:`vision_common.images.load`; this module holds the
pieces that the loaders share: the :class:`ImageLimits` policy, the typed :class:`ImageInputError` and the
:class:`LoadedImage` result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# Every code an ImageInputError may carry. Callers branch on these (the API maps them to HTTP 400/413/415),
# so the set is closed: a typo in a raise site fails loudly instead of inventing a new code.
ERROR_CODES = frozenset(
    {
        "empty_file",  # zero bytes
        "too_large",  # more bytes than ImageLimits.max_bytes
        "not_an_image",  # not a recognised image, or the pixel data is corrupt
        "truncated",  # the file ends before the image does
        "decompression_bomb",  # more pixels than ImageLimits.max_pixels (checked before decoding)
        "unsupported_format",  # a real image in a format outside ImageLimits.allowed_formats
        "too_small",  # a side shorter than ImageLimits.min_side
        "extreme_aspect_ratio",  # longer/shorter side above ImageLimits.max_aspect_ratio
        "bad_data_url",  # malformed data: URL
        "bad_url",  # a URL scheme or shape we do not fetch
        "remote_disabled",  # http(s) URL while ImageLimits.allow_remote_urls is False
        "remote_failed",  # the download failed (HTTP status, timeout, network error)
        "local_disabled",  # a file path while ImageLimits.allow_local_paths is False
        "outside_root",  # a path that resolves outside ImageLimits.local_root
        "not_found",  # no such file
        "unreadable",  # exists but is a directory, device, FIFO, or permission is denied
        "bad_reference",  # an empty string or an object that is not an image reference
    }
)

# Pillow's format names for the common web/camera formats. "MPO" (multi-picture JPEG from phones) is opened by
# the JPEG plugin, so allowing "JPEG" admits it.
DEFAULT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_MIB = 1024 * 1024


def format_bytes(n: int) -> str:
    """``25165824`` -> ``'25,165,824 bytes (24.0 MiB)'``: exact for limits, readable for people."""
    return f"{n:,} bytes ({n / _MIB:.1f} MiB)" if n >= _MIB else f"{n:,} bytes"


class ImageInputError(ValueError):
    """An image reference was rejected. ``code`` is one of :data:`ERROR_CODES`; ``str(err)`` is for users.

    The message names the source (file name, URL or ``<upload>``), the problem, and where a limit is
    involved, the limit and the ``ImageLimits`` field that sets it.
    """

    def __init__(self, code: str, message: str, *, source: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown ImageInputError code {code!r}; expected one of {sorted(ERROR_CODES)}")
        self.code = code
        self.source = source
        self.detail = message
        super().__init__(f"{source}: {message}")


def _known_pillow_formats() -> frozenset[str]:
    Image.init()  # Pillow registers its plugins lazily; this is the same call Image.open makes.
    return frozenset(Image.OPEN)


@dataclass(frozen=True)
class ImageLimits:
    """What image input accepts. The defaults suit a trusted local user (CLI, local Gradio).

    For requests from the network use :meth:`for_untrusted_requests` (no server paths, no fetching).
    """

    max_bytes: int = 20 * _MIB
    """Largest encoded file, checked before any decoding (a data URL is checked before base64 decoding)."""
    max_pixels: int = 40_000_000
    """Decompression-bomb guard: width*height from the header, checked before the pixels are decoded.
    Enforced per call; Pillow's global ``Image.MAX_IMAGE_PIXELS`` is never changed (it is module state), but
    its own hard error (2x that value, ~179 MP by default) still fires first for even larger headers."""
    min_side: int = 1
    """Shortest allowed side in pixels."""
    max_aspect_ratio: float | None = None
    """Largest longer/shorter side ratio, or None for no limit (AnyRes handles 200:1 strips)."""
    allowed_formats: tuple[str, ...] = DEFAULT_FORMATS
    """Pillow format names that may be decoded; other parsers are never run on the pixel data."""
    allow_remote_urls: bool = False
    """Fetch http(s) URLs. Off by default: fetching lets a client make the server request any host."""
    remote_timeout_s: float = 10.0
    """Whole-download deadline for a remote URL (connect + all reads)."""
    allow_local_paths: bool = True
    """Accept file paths and file:// URLs. Turn off for network clients unless ``local_root`` confines them."""
    local_root: Path | None = None
    """When set, paths must resolve (symlinks and ``..`` included) inside this folder; relative paths are
    taken relative to it."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "min_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ImageLimits.{name} must be a positive integer, got {value!r}")
        if self.min_side * self.min_side > self.max_pixels:
            raise ValueError(
                f"ImageLimits.min_side={self.min_side} needs at least {self.min_side**2:,} pixels, more than "
                f"max_pixels={self.max_pixels:,}: no image could pass"
            )
        if self.max_aspect_ratio is not None:
            ratio = self.max_aspect_ratio
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
                raise ValueError(
                    f"ImageLimits.max_aspect_ratio must be a finite number or None, got {ratio!r}"
                )
            if ratio < 1:
                raise ValueError(f"ImageLimits.max_aspect_ratio is longer/shorter side, so >= 1; got {ratio}")
        object.__setattr__(self, "allowed_formats", self._checked_formats(self.allowed_formats))
        if not isinstance(self.remote_timeout_s, (int, float)) or not 0 < self.remote_timeout_s < math.inf:
            raise ValueError(
                f"ImageLimits.remote_timeout_s must be a positive number, got {self.remote_timeout_s!r}"
            )
        for name in ("allow_remote_urls", "allow_local_paths"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ImageLimits.{name} must be True or False, got {getattr(self, name)!r}")
        if self.local_root is not None:
            if not self.allow_local_paths:
                raise ValueError(
                    "ImageLimits.local_root is set but allow_local_paths=False: paths would be both confined "
                    "to a folder and refused; drop one of the two"
                )
            # Resolve once, so a later chdir or a symlinked root cannot move the boundary.
            root = Path(self.local_root).expanduser().resolve()
            if not root.is_dir():
                raise ValueError(f"ImageLimits.local_root {self.local_root} is not an existing directory")
            object.__setattr__(self, "local_root", root)

    @staticmethod
    def _checked_formats(formats: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        if isinstance(formats, str) or not formats:
            raise ValueError(
                f"ImageLimits.allowed_formats must be a non-empty tuple of names, got {formats!r}"
            )
        known = _known_pillow_formats()
        names = []
        for fmt in formats:
            name = str(fmt).upper()
            if name == "JPG":
                raise ValueError("ImageLimits.allowed_formats: Pillow calls JPG 'JPEG'")
            if name not in known:
                raise ValueError(
                    f"ImageLimits.allowed_formats: {fmt!r} is not a format Pillow can open; known: {sorted(known)}"
                )
            if name not in names:
                names.append(name)
        return tuple(names)

    @classmethod
    def tiny(cls, **overrides: object) -> ImageLimits:
        """Small caps for tests: limit checks trigger on synthetic images of a few KiB in milliseconds."""
        values: dict[str, object] = {"max_bytes": 256 * 1024, "max_pixels": 1_000_000}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def for_untrusted_requests(cls, **overrides: object) -> ImageLimits:
        """For OpenAI-API / network clients: only uploaded bytes and data URLs, no fetching, and no server
        paths unless ``local_root=`` confines them to one folder."""
        confined = overrides.get("local_root") is not None
        values: dict[str, object] = {"allow_local_paths": confined, "allow_remote_urls": False}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image ready for the model, plus what happened to it on the way.

    ``original_size`` and ``original_mode`` describe the file as stored (before EXIF rotation and colour
    conversion); ``image.size`` is what the model sees. ``notices`` are short remarks worth showing to the
    user, e.g. ``"animated GIF: using the first of 12 frames"``.
    """

    image: Image.Image
    original_size: tuple[int, int]
    original_mode: str
    format: str
    notices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.image.mode != "RGB":
            raise ValueError(f"LoadedImage.image must be RGB, got mode {self.image.mode}")
