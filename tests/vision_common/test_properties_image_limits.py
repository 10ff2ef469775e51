"""Property tests (issue 19) of the image limits, ``vision_common.images``: the byte limit refuses before Pillow
parses anything (a data URL before its base64 is decoded), the pixel limit refuses from the header before any
pixel is decoded, each limit holds exactly at its boundary, and loosening limits never refuses an image that
loaded."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from types import SimpleNamespace
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from vision_common.images import sources
from vision_common.images.decode import load_image_bytes
from vision_common.images.limits import ImageInputError, ImageLimits
from vision_common.images.sources import load_image_data_url

PROPERTIES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = ("PNG", "BMP", "GIF", "TIFF", "WEBP", "JPEG")


class Reached(Exception):
    """Raised by a stubbed-out step: the input got past every limit to that step."""


def reached(*args, **kwargs):
    raise Reached


def outcome(call) -> str:
    """The error code a load ended with, "reached" when it got to the stubbed step, or "loaded"."""
    try:
        call()
    except ImageInputError as error:
        return error.code
    except Reached:
        return "reached"
    return "loaded"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` and whose pixel data is empty."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@st.composite
def encoded_images(draw) -> tuple[bytes, tuple[int, int]]:
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    fmt = draw(st.sampled_from(FORMATS))
    colour = tuple(draw(st.integers(0, 255)) for _ in range(3))
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue(), size


@PROPERTIES
@given(data=st.binary(min_size=1, max_size=4096), max_bytes=st.integers(1, 4096))
def test_more_bytes_than_allowed_are_refused_before_pillow_opens_anything(data, max_bytes):
    limits = ImageLimits(max_bytes=max_bytes, max_pixels=1)
    with mock.patch.object(Image, "open", reached):
        result = outcome(lambda: load_image_bytes(data, limits, source="x"))
    assert result == ("too_large" if len(data) > max_bytes else "reached")


@PROPERTIES
@given(payload_bytes=st.integers(1, 3000), max_bytes=st.integers(1, 3000))
def test_a_data_url_over_the_byte_limit_is_refused_before_base64_decoding(payload_bytes, max_bytes):
    url = "data:image/png;base64," + base64.b64encode(bytes(payload_bytes)).decode()
    limits = ImageLimits(max_bytes=max_bytes, max_pixels=1)
    # Replace the module only where sources.py looks it up: hypothesis itself uses base64.
    with mock.patch.object(sources, "base64", SimpleNamespace(b64decode=reached)):
        result = outcome(lambda: load_image_data_url(url, limits))
    assert result == ("too_large" if payload_bytes > max_bytes else "reached")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own notice above 89 MP
@PROPERTIES
@given(width=st.integers(1, 200_000), height=st.integers(1, 200_000), max_pixels=st.integers(1, 50_000_000))
def test_more_pixels_than_allowed_are_refused_from_the_header_before_decoding(width, height, max_pixels):
    limits = ImageLimits(max_pixels=max_pixels)
    with mock.patch.object(ImageFile.ImageFile, "load", reached):
        result = outcome(lambda: load_image_bytes(png_header_only(width, height), limits, source="h"))
    assert result == ("decompression_bomb" if width * height > max_pixels else "reached")


@PROPERTIES
@given(width=st.integers(5000, 60_000), height=st.integers(5000, 60_000), spare=st.integers(0, 64))
def test_the_byte_limit_is_checked_before_the_pixel_limit(width, height, spare):
    data = png_header_only(width, height)
    limits = ImageLimits(max_bytes=max(len(data) - 1 - spare, 1), max_pixels=1)
    assert outcome(lambda: load_image_bytes(data, limits, source="h")) == "too_large"


@PROPERTIES
@given(image=encoded_images(), looser=st.integers(0, 10**6))
def test_each_limit_holds_exactly_at_its_boundary_and_looser_limits_still_load(image, looser):
    data, (width, height) = image
    pixels = width * height
    exact = ImageLimits(max_bytes=len(data), max_pixels=pixels)
    loaded = load_image_bytes(data, exact, source="img")
    assert loaded.image.size == (width, height) and loaded.image.mode == "RGB"
    loose = ImageLimits(max_bytes=len(data) + looser, max_pixels=pixels + looser)
    assert load_image_bytes(data, loose, source="img").image.size == (width, height)
    fewer_bytes = ImageLimits(max_bytes=len(data) - 1, max_pixels=pixels) if len(data) > 1 else None
    if fewer_bytes is not None:
        assert outcome(lambda: load_image_bytes(data, fewer_bytes, source="img")) == "too_large"
    if pixels > 1:
        fewer_pixels = ImageLimits(max_bytes=len(data), max_pixels=pixels - 1)
        assert outcome(lambda: load_image_bytes(data, fewer_pixels, source="img")) == "decompression_bomb"
