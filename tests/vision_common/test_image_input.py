"""Safe image input: every hostile or odd input gives a typed error or a correct RGB image, never a crash."""

from __future__ import annotations

import base64
import io
import os
import random
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from vision_common.images.load import (
    ImageInputError,
    ImageLimits,
    LoadedImage,
    load_image,
    load_image_bytes,
    load_image_data_url,
    load_image_path,
    load_image_url,
    main,
    to_data_url,
)
from vision_common.images.modes import uint16_to_uint8

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noisy_rgb(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def png_with_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose IHDR declares ``width`` x ``height`` but carries no pixel data:
    a decompression bomb for the header check at zero cost."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def rejects(code: str, fragment: str, fn, *args, **kwargs) -> ImageInputError:
    with pytest.raises(ImageInputError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, f"expected {code}, got {info.value.code}: {info.value}"
    assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    return info.value


LIMITS = ImageLimits.tiny()


# ----------------------------------------------------------------------------------------------- limits


def test_limits_validation_rejects_contradictions(tmp_path):
    with pytest.raises(ValueError, match="max_pixels"):
        ImageLimits(max_pixels=0)
    with pytest.raises(ValueError, match="no image could pass"):
        ImageLimits(min_side=100, max_pixels=9_999)
    with pytest.raises(ValueError, match=">= 1"):
        ImageLimits(max_aspect_ratio=0.5)
    with pytest.raises(ValueError, match="JPEG"):
        ImageLimits(allowed_formats=("JPG",))
    with pytest.raises(ValueError, match="not a format Pillow can open"):
        ImageLimits(allowed_formats=("PNGX",))
    with pytest.raises(ValueError, match="allow_local_paths=False"):
        ImageLimits(local_root=tmp_path, allow_local_paths=False)
    with pytest.raises(ValueError, match="not an existing directory"):
        ImageLimits(local_root=tmp_path / "missing")
    assert ImageLimits(allowed_formats=("png", "PNG", "jpeg")).allowed_formats == ("PNG", "JPEG")
    untrusted = ImageLimits.for_untrusted_requests()
    assert not untrusted.allow_local_paths and not untrusted.allow_remote_urls
    assert ImageLimits.for_untrusted_requests(local_root=tmp_path).local_root == tmp_path.resolve()


def test_error_code_must_be_known():
    with pytest.raises(ValueError, match="unknown ImageInputError code"):
        ImageInputError("oops", "message", source="x")


# ----------------------------------------------------------------------------------------------- bad bytes


def test_empty_bytes_and_empty_file(tmp_path):
    rejects("empty_file", "0 bytes", load_image_bytes, b"", LIMITS, source="upload.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    rejects("empty_file", "empty.png: the file is empty", load_image_path, empty, LIMITS)


def test_too_many_bytes_checked_before_decoding():
    data = b"\x00" * (LIMITS.max_bytes + 1)  # not an image at all: the size check must come first
    rejects(
        "too_large",
        "the limit is 262,144 bytes (ImageLimits.max_bytes)",
        load_image_bytes,
        data,
        LIMITS,
        source="big.bin",
    )


def test_random_bytes_and_text_renamed_png(tmp_path):
    garbage = bytes(random.Random(0).getrandbits(8) for _ in range(500))
    rejects(
        "not_an_image",
        "<upload>: not a recognised image file",
        load_image_bytes,
        garbage,
        LIMITS,
        source="<upload>",
    )
    text = tmp_path / "notes.png"
    text.write_text("hello, this is a shopping list\n")
    rejects(
        "not_an_image",
        "notes.png: not a recognised image file (it starts with b'hello, t')",
        load_image_path,
        text,
        LIMITS,
    )


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_images(fmt):
    data = encode(noisy_rgb(), fmt)
    rejects(
        "truncated",
        f"the {fmt} file is truncated",
        load_image_bytes,
        data[: len(data) // 2],
        LIMITS,
        source="t",
    )


def test_truncated_header_and_corrupt_pixels():
    png = encode(noisy_rgb(), "PNG")
    rejects(
        "truncated",
        "starts like a PNG image but its header is invalid",
        load_image_bytes,
        png[:30],
        LIMITS,
        source="t",
    )
    corrupt = bytearray(png)
    corrupt[2000] ^= 0xFF  # inside the compressed IDAT stream
    rejects(
        "not_an_image", "the PNG pixel data is corrupt", load_image_bytes, bytes(corrupt), LIMITS, source="c"
    )


def test_known_format_outside_allowed_list():
    ppm = encode(Image.new("RGB", (4, 4)), "PPM")
    rejects(
        "unsupported_format",
        "PPM images are not accepted; allowed formats: PNG, JPEG",
        load_image_bytes,
        ppm,
        LIMITS,
        source="x.ppm",
    )
    jpeg = encode(Image.new("RGB", (4, 4)), "JPEG")
    rejects(
        "unsupported_format",
        "JPEG images are not accepted; allowed formats: PNG (ImageLimits.allowed_formats)",
        load_image_bytes,
        jpeg,
        ImageLimits(allowed_formats=("PNG",)),
        source="x.jpg",
    )


# ----------------------------------------------------------------------------------------------- geometry


def test_decompression_bomb_from_header_only(monkeypatch):
    # 48 MP is below Pillow's own warning threshold (~89 MP): only our per-call limit can stop it.
    rejects(
        "decompression_bomb",
        "image is 48,000,000 pixels (8,000x6,000); the limit is 40,000,000 (ImageLimits.max_pixels)",
        load_image_bytes,
        png_with_header(8000, 6000),
        ImageLimits(),
        source="b",
    )
    # Our check does not depend on Pillow's global guard.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    rejects(
        "decompression_bomb",
        "48,000,000 pixels",
        load_image_bytes,
        png_with_header(8000, 6000),
        ImageLimits(),
        source="b",
    )
    monkeypatch.undo()
    # 10 GP: Pillow's hard error fires inside Image.open; it is reported the same way.
    rejects(
        "decompression_bomb",
        "image is 10,000,000,000 pixels; the limit is 40,000,000",
        load_image_bytes,
        png_with_header(100_000, 100_000),
        ImageLimits(),
        source="b",
    )


def test_tiny_pixel_limit_on_real_image():
    data = encode(noisy_rgb((32, 32)), "PNG")
    rejects(
        "decompression_bomb",
        "image is 1,024 pixels (32x32); the limit is 1,000",
        load_image_bytes,
        data,
        ImageLimits(max_pixels=1000),
        source="s",
    )


def test_extreme_sizes_load_and_optional_limits():
    one = load_image_bytes(encode(Image.new("RGB", (1, 1), GREEN), "PNG"), LIMITS, source="1x1")
    assert one.image.size == (1, 1) and one.image.getpixel((0, 0)) == GREEN
    strip = load_image_bytes(encode(Image.new("L", (20000, 100), 77), "PNG"), ImageLimits(), source="strip")
    assert strip.image.size == (20000, 100) and strip.image.mode == "RGB"
    assert strip.image.getpixel((19999, 99)) == (77, 77, 77)
    data = encode(Image.new("RGB", (40, 2)), "PNG")
    rejects(
        "extreme_aspect_ratio",
        "aspect ratio of 20.0:1; the limit is 10:1",
        load_image_bytes,
        data,
        ImageLimits(max_aspect_ratio=10),
        source="a",
    )
    rejects(
        "too_small",
        "each side must be at least 4 (ImageLimits.min_side)",
        load_image_bytes,
        data,
        ImageLimits(min_side=4),
        source="a",
    )


# ----------------------------------------------------------------------------------------------- modes


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95)  # pure cyan
    loaded = load_image_bytes(data, LIMITS, source="cmyk.jpg")
    assert loaded.original_mode == "CMYK" and "converted CMYK to RGB" in loaded.notices
    assert np.allclose(loaded.image.getpixel((8, 8)), (0, 255, 255), atol=3)


def test_palette_png_with_transparency_composited_on_white():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])  # index 0 black (transparent), index 1 red
    palette.putpixel((1, 1), 1)
    loaded = load_image_bytes(encode(palette, "PNG", transparency=0), LIMITS, source="p.png")
    assert loaded.original_mode == "P"
    assert loaded.image.getpixel((0, 0)) == WHITE  # not the black hidden under the transparency
    assert loaded.image.getpixel((1, 1)) == RED
    assert loaded.notices == ("transparent pixels composited on white",)


def test_rgba_half_transparent_and_opaque():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    loaded = load_image_bytes(encode(rgba, "PNG"), LIMITS, source="a.png")
    # 128/255 red over white: G = B = 255 * (1 - 128/255) = 127
    assert loaded.image.getpixel((0, 0)) == (255, 127, 127)
    assert "transparent pixels composited on white" in loaded.notices
    opaque = load_image_bytes(
        encode(Image.new("RGBA", (4, 4), (0, 0, 255, 255)), "PNG"), LIMITS, source="o.png"
    )
    assert opaque.image.getpixel((0, 0)) == BLUE and opaque.notices == ()


def test_sixteen_bit_grey_is_scaled_not_clipped():
    samples = np.array([[0, 32768], [65535, 257]], dtype=np.uint16)
    loaded = load_image_bytes(encode(Image.fromarray(samples), "PNG"), LIMITS, source="g16.png")
    assert loaded.original_mode == "I;16" and "16-bit image reduced to 8 bits" in loaded.notices
    assert [loaded.image.getpixel(xy)[0] for xy in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 128, 255, 1]
    assert uint16_to_uint8(np.array([32767, 32768, 65535], dtype=np.uint16)).tolist() == [127, 128, 255]


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("1", 1, 255), ("L", 200, 200), ("LA", (90, 255), 90), ("I", 32768, 128), ("F", 0.5, 128)],
)
def test_other_modes_map_to_expected_grey(mode, value, expected):
    loaded = load_image(Image.new(mode, (2, 2), value), LIMITS)
    assert loaded.image.mode == "RGB" and loaded.image.getpixel((0, 0)) == (expected,) * 3


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    loaded = load_image_bytes(data, LIMITS, source="anim.gif")
    assert loaded.image.getpixel((3, 3)) == RED
    assert loaded.notices == ("animated GIF: using the first of 3 frames",)


def test_exif_orientation_6_is_honoured():
    stored = Image.new("RGB", (48, 24), BLUE)
    stored.paste(RED, (0, 0, 16, 16))  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    loaded = load_image_bytes(
        encode(stored, "JPEG", quality=95, exif=exif.tobytes()), LIMITS, source="o6.jpg"
    )
    assert loaded.original_size == (48, 24) and loaded.image.size == (24, 48)
    assert "rotated per EXIF orientation 6" in loaded.notices
    # Clockwise rotation moves the top-left corner to the top-right.
    assert np.allclose(loaded.image.getpixel((20, 3)), RED, atol=8)
    assert np.allclose(loaded.image.getpixel((3, 3)), BLUE, atol=8)


# ----------------------------------------------------------------------------------------------- data URLs


def test_data_url_round_trip_and_mismatch_notice():
    image = noisy_rgb((16, 8))
    url = to_data_url(image)
    assert url.startswith("data:image/png;base64,")
    loaded = load_image_data_url(url, LIMITS)
    assert np.array_equal(np.asarray(loaded.image), np.asarray(image)) and loaded.notices == ()
    jpeg_as_png = "data:image/png;base64," + base64.b64encode(encode(image, "JPEG")).decode()
    assert load_image(jpeg_as_png, LIMITS).notices == ("data URL says image/png but the data is JPEG",)
    assert to_data_url(image, "JPEG").startswith("data:image/jpeg;base64,")
    with pytest.raises(ValueError, match="format must be one of"):
        to_data_url(image, "TIFF")


@pytest.mark.parametrize(
    ("url", "code", "fragment"),
    [
        ("data:text/plain;base64,aGVsbG8=", "bad_data_url", "media type must be image/*"),
        ("data:image/png,rawbytes", "bad_data_url", "only base64 data URLs"),
        ("data:image/png;base64", "bad_data_url", "expected 'data:image/<type>;base64,<data>'"),
        ("data:image/png;base64,iVBO RwOK", "bad_data_url", "character ' ' at position 4"),
        ("data:image/png;base64,iVBORw0", "bad_data_url", "wrong length or padding"),
        ("data:image/png;base64,", "empty_file", "no data after the comma"),
        ("data:image/png;base64,aGVsbG8gd29ybGQh", "not_an_image", "<data URL>: not a recognised image"),
        ("data:image/png;base64," + "A" * 400_000, "too_large", "(ImageLimits.max_bytes)"),
    ],
)
def test_bad_data_urls(url, code, fragment):
    rejects(code, fragment, load_image, url, LIMITS)


# ----------------------------------------------------------------------------------------------- paths


def test_paths_inside_and_outside_root(tmp_path):
    root = tmp_path / "uploads"
    root.mkdir()
    (root / "ok.png").write_bytes(encode(Image.new("RGB", (3, 3), GREEN), "PNG"))
    secret = tmp_path / "secret.png"
    secret.write_bytes(encode(Image.new("RGB", (3, 3), RED), "PNG"))
    (root / "link.png").symlink_to(secret)
    limits = ImageLimits.tiny(local_root=root)
    assert load_image_path(root / "ok.png", limits).image.getpixel((0, 0)) == GREEN
    assert load_image("ok.png", limits).image.getpixel((0, 0)) == GREEN  # relative to the root
    assert load_image((root / "ok.png").as_uri(), limits).format == "PNG"
    rejects("outside_root", "outside the allowed folder", load_image_path, root / ".." / "secret.png", limits)
    rejects("outside_root", f"resolves to {secret}", load_image_path, "../secret.png", limits)
    rejects("outside_root", "(ImageLimits.local_root)", load_image_path, root / "link.png", limits)
    rejects("not_found", "no such file", load_image_path, root / "missing.png", limits)
    rejects("unreadable", "is a directory", load_image_path, root, limits)
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "pipe.png")
        rejects("unreadable", "not a regular file", load_image_path, root / "pipe.png", limits)
    untrusted = ImageLimits.for_untrusted_requests()
    rejects("local_disabled", "ImageLimits.allow_local_paths=False", load_image, str(secret), untrusted)
    rejects("local_disabled", "allow_local_paths", load_image, secret.as_uri(), untrusted)


def test_file_over_byte_limit_is_not_read(tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(encode(noisy_rgb((64, 64)), "PNG"))
    rejects("too_large", "big.png: file is", load_image_path, big, ImageLimits(max_bytes=1000))


# ----------------------------------------------------------------------------------------------- URLs


def test_remote_urls_disabled_and_bad_schemes():
    rejects(
        "remote_disabled",
        "ImageLimits.allow_remote_urls=False",
        load_image,
        "https://example.com/cat.png",
        LIMITS,
    )
    rejects("bad_url", "unsupported URL scheme 'ftp'", load_image, "ftp://example.com/cat.png", LIMITS)
    rejects("bad_url", "http:// or https://", load_image_url, "https:///nohost.png", LIMITS)
    rejects("bad_reference", "empty", load_image, "  ", LIMITS)
    rejects("bad_reference", "from a int", load_image, 42, LIMITS)


def _mock_client(handler) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_remote_url_enabled_streams_with_byte_cap():
    png = encode(Image.new("RGB", (5, 5), BLUE), "PNG")
    limits = ImageLimits.tiny(allow_remote_urls=True)

    def serve(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "identity"
        if request.url.path == "/ok.png":
            return httpx.Response(200, stream=httpx.ByteStream(png))
        if request.url.path == "/huge-announced.png":
            return httpx.Response(200, headers={"content-length": str(10**9)}, content=b"")
        if request.url.path == "/endless.png":  # no content-length: only the streamed count can stop it
            return httpx.Response(200, stream=httpx.ByteStream(b"\x89PNG" + bytes(8 << 20)))
        if request.url.path == "/slow.png":
            raise httpx.ReadTimeout("read timed out", request=request)
        return httpx.Response(404)

    with _mock_client(serve) as client:
        loaded = load_image_url("https://img.test/ok.png", limits, client=client)
        assert loaded.image.getpixel((2, 2)) == BLUE
        rejects(
            "too_large",
            "server announces 1,000,000,000 bytes",
            load_image_url,
            "https://img.test/huge-announced.png",
            limits,
            client=client,
        )
        rejects(
            "too_large",
            "download stopped after",
            load_image_url,
            "https://img.test/endless.png",
            limits,
            client=client,
        )
        rejects(
            "remote_failed", "HTTP 404", load_image_url, "https://img.test/nope.png", limits, client=client
        )
        rejects(
            "remote_failed",
            "timed out after 10 s",
            load_image_url,
            "https://img.test/slow.png",
            limits,
            client=client,
        )


# ----------------------------------------------------------------------------------------------- robustness


@pytest.mark.filterwarnings("error")  # warnings escalated to errors (as under -W error) must be mapped too
def test_mutated_files_only_ever_raise_image_input_error():
    """Flip, cut and splice real files: the loader must return an RGB image or a typed error, nothing else."""
    rng = random.Random(1234)
    frames = [Image.new("P", (12, 12), i) for i in range(3)]
    seeds = [
        encode(noisy_rgb((24, 16)), "PNG"),
        encode(noisy_rgb((24, 16)), "JPEG"),
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        encode(noisy_rgb((24, 16)), "WEBP"),
        encode(noisy_rgb((24, 16)), "BMP"),
        encode(noisy_rgb((24, 16)), "TIFF"),
    ]
    outcomes = {"ok": 0}
    for trial in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            data[position] = rng.getrandbits(8)
        if trial % 3 == 0:
            data = data[: rng.randrange(1, len(data))]
        try:
            loaded = load_image_bytes(bytes(data), LIMITS, source="fuzz")
        except ImageInputError as exc:
            outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
        else:
            assert isinstance(loaded, LoadedImage) and loaded.image.mode == "RGB"
            outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and len(outcomes) >= 3, outcomes


def test_cli_reports_each_reference(tmp_path, capsys):
    good = tmp_path / "good.png"
    good.write_bytes(encode(Image.new("RGB", (6, 4)), "PNG"))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main([str(good)]) == 0
    assert main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "good.png: PNG 6x4" in out and "REJECTED [not_an_image]" in out
    assert main(["--max-pixels", "0", str(good)]) == 2
