"""Convert any Pillow pixel mode to 8-bit RGB the way a person would expect to see it.

``Image.convert("RGB")`` alone gets several cases wrong for a vision model: 16-bit greyscale is clipped
(mid-grey 32768 becomes white), transparent pixels keep whatever colour hides under them (often black), and
float images are clipped to 0/1. These pure functions handle each mode explicitly and report what they did.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Modes whose samples are 16-bit unsigned integers (native, little- and big-endian byte orders).
_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes with an alpha band; "La"/"RGBa" are premultiplied, which convert("RGBA") undoes.
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
WHITE = (255, 255, 255)


def uint16_to_uint8(samples: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 with rounding (65535/255 = 257): 32768 -> 128, 65535 -> 255."""
    return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)


def rescale_to_uint8(samples: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low..high`` linearly onto 0..255 (a constant image maps to 0)."""
    values = samples.astype(np.float64)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def composite_on_white(rgba: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    """Flatten RGBA onto white; a notice only when some pixel really is (partly) transparent."""
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return rgba.convert("RGB"), ()
    # White, not black: a transparent logo or diagram on black is unreadable, and white is what a viewer shows.
    flattened = Image.new("RGB", rgba.size, WHITE)
    flattened.paste(rgba.convert("RGB"), mask=alpha)
    return flattened, ("transparent pixels composited on white",)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(grey).convert("RGB")


def _int32_to_rgb(image: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    samples = np.asarray(image)
    low, high = int(samples.min()), int(samples.max())
    if low >= 0 and high <= 65535:
        # Pillow stores 16-bit greyscale from several formats (PGM, some TIFFs) as mode "I".
        return _grey_to_rgb(uint16_to_uint8(samples)), ("16-bit image reduced to 8 bits",)
    notice = f"32-bit integer image rescaled from {low}..{high} to 8 bits"
    return _grey_to_rgb(rescale_to_uint8(samples, low, high)), (notice,)


def _float_to_rgb(image: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    samples = np.asarray(image, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    samples = np.nan_to_num(samples, nan=low, posinf=high, neginf=low)
    if low >= 0.0 and high <= 1.0:
        return _grey_to_rgb(rescale_to_uint8(samples, 0.0, 1.0)), ("floating-point image scaled from 0..1",)
    notice = f"floating-point image rescaled from {low:g}..{high:g} to 8 bits"
    return _grey_to_rgb(rescale_to_uint8(samples, low, high)), (notice,)


def to_rgb(image: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    """Return an 8-bit RGB version of a loaded ``image`` and the notices describing the conversion.

    Raises ``ValueError`` naming the mode when Pillow cannot convert it.
    """
    mode = image.mode
    if mode == "RGB":
        return image, ()
    if mode in _UINT16_MODES:
        return _grey_to_rgb(uint16_to_uint8(np.asarray(image))), ("16-bit image reduced to 8 bits",)
    if mode == "I":
        return _int32_to_rgb(image)
    if mode == "F":
        return _float_to_rgb(image)
    try:
        if mode == "CMYK":
            return image.convert("RGB"), ("converted CMYK to RGB",)
        # "transparency" in info is a palette index or a colour key (PNG tRNS, GIF) for P/L/RGB/1 images.
        if mode in _ALPHA_MODES or image.info.get("transparency") is not None:
            return composite_on_white(image.convert("RGBA"))
        converted = image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"pixel mode {mode} cannot be converted to RGB ({exc})") from exc
    notices = (f"converted {mode} to RGB",) if mode in ("LAB", "HSV") else ()
    return converted, notices
