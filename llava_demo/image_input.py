"""Safe image input for chat: the one door every image passes through before reaching the model.

Gradio uploads, OpenAI-API ``image_url`` parts and CLI ``--image`` all call :func:`load_image` (or one of the
specific loaders). Anything wrong with the input raises :class:`ImageInputError` with a ``code`` and a message
a user can act on, so a server can answer 4xx and keep serving. See ``docs/image_input.md``.

CLI, to check files the way the app would::

    python -m llava_demo.image_input photo.jpg data/*.png --max-pixels 20000000
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import os
import re
import stat
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from PIL import Image

from llava_demo.image_decode import load_image_bytes, load_pil_image
from llava_demo.image_limits import ImageInputError, ImageLimits, LoadedImage, format_bytes

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

# data:[image/<subtype>][;param=value]*;base64,  -- RFC 2397, restricted to base64 images.
_DATA_URL_HEADER = re.compile(
    r"data:(?P<type>image/[a-z0-9.+-]+)(?P<params>(?:;[a-z0-9_.+-]+=[a-z0-9_.+-]+)*);base64", re.IGNORECASE
)
_BASE64_ALPHABET = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_MAX_DATA_URL_HEADER = 256  # a real header is ~30 characters; bounds the regex on hostile input
_MEDIA_TYPE_FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
_DATA_URL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_REDIRECTS = 5
_DOWNLOAD_CHUNK = 64 * 1024

ImageRef = Image.Image | LoadedImage | bytes | bytearray | memoryview | str | os.PathLike


def _short(text: str, limit: int = 80) -> str:
    """Data URLs and long URLs make unreadable messages; keep the start."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- local files


def _read_regular_file(path: Path, limits: ImageLimits, source: str) -> bytes:
    # O_NOFOLLOW: the path was resolved already, so a symlink here was swapped in after the check.
    # O_NONBLOCK: opening a FIFO must not hang the server; fstat then rejects it.
    flags = (
        os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageInputError("not_found", "no such file", source=source) from None
    except OSError as exc:
        raise ImageInputError(
            "unreadable", f"cannot open the file: {exc.strerror or exc}", source=source
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise ImageInputError("unreadable", f"is {kind}", source=source)
        if info.st_size > limits.max_bytes:
            raise ImageInputError(
                "too_large",
                f"file is {format_bytes(info.st_size)}; the limit is {format_bytes(limits.max_bytes)} "
                "(ImageLimits.max_bytes)",
                source=source,
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(limits.max_bytes + 1)  # +1: a file that grew since fstat still trips the limit
    except OSError as exc:
        raise ImageInputError(
            "unreadable", f"cannot read the file: {exc.strerror or exc}", source=source
        ) from exc
    finally:
        os.close(fd)


def load_image_path(path: str | os.PathLike, limits: ImageLimits) -> LoadedImage:
    """Load an image file. With ``limits.local_root`` set, the path must resolve inside it after following
    symlinks and ``..``; relative paths are taken relative to the root."""
    source = os.fspath(path)
    if not isinstance(source, str) or not source or "\x00" in source:
        raise ImageInputError("bad_reference", "not a usable file path", source=repr(path))
    if not limits.allow_local_paths:
        raise ImageInputError(
            "local_disabled",
            "reading files from the server is disabled (ImageLimits.allow_local_paths=False)",
            source=source,
        )
    given = Path(source)
    root = limits.local_root
    if root is not None and not given.is_absolute():
        given = root / given
    try:
        # Non-strict: resolve symlinks and ".." without first revealing whether a file outside the root exists.
        resolved = given.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise ImageInputError("unreadable", f"cannot resolve the path: {exc}", source=source) from exc
    if root is not None and not resolved.is_relative_to(root):
        raise ImageInputError(
            "outside_root",
            f"the path resolves to {resolved}, outside the allowed folder {root} (ImageLimits.local_root)",
            source=source,
        )
    data = _read_regular_file(resolved, limits, source)
    return load_image_bytes(data, limits, source=source)


# ---------------------------------------------------------------------------------------------- data URLs


def load_image_data_url(url: str, limits: ImageLimits) -> LoadedImage:
    """Load ``data:image/<type>;base64,<payload>`` (strict: base64 only, standard alphabet, no whitespace).

    The payload's decoded size is checked against ``max_bytes`` before decoding. A media type that
    disagrees with the actual content is allowed (the content decides) but reported in ``notices``.
    """
    source = "<data URL>"
    if not isinstance(url, str):
        raise ImageInputError("bad_data_url", f"expected a string, got {type(url).__name__}", source=source)
    header, comma, payload = url.partition(",")
    if not comma or len(header) > _MAX_DATA_URL_HEADER:
        raise ImageInputError("bad_data_url", "expected 'data:image/<type>;base64,<data>'", source=source)
    match = _DATA_URL_HEADER.fullmatch(header)
    if match is None:
        if not header[:5].lower() == "data:":
            problem = "does not start with 'data:'"
        elif not header[5:].lower().startswith("image/"):
            problem = f"media type must be image/*, got {_short(header[5:].split(';')[0], 40)!r}"
        elif not header.lower().endswith(";base64"):
            problem = "only base64 data URLs are accepted (';base64' is missing)"
        else:
            problem = f"malformed header {_short(header, 60)!r}"
        raise ImageInputError("bad_data_url", problem, source=source)
    # Each 4 base64 characters carry 3 bytes: reject oversize payloads without allocating the decoded copy.
    decoded_size = len(payload) // 4 * 3 - payload[-2:].count("=")
    if decoded_size > limits.max_bytes:
        raise ImageInputError(
            "too_large",
            f"data URL carries about {format_bytes(decoded_size)}; the limit is {format_bytes(limits.max_bytes)} "
            "(ImageLimits.max_bytes)",
            source=source,
        )
    if not payload:
        raise ImageInputError("empty_file", "the data URL has no data after the comma", source=source)
    raw = payload.encode("ascii", errors="replace")
    if len(payload) % 4 or _BASE64_ALPHABET.fullmatch(raw) is None:
        bad = next(
            (i for i, ch in enumerate(payload) if not (ch.isascii() and (ch.isalnum() or ch in "+/="))), None
        )
        where = (
            f"character {payload[bad]!r} at position {bad}" if bad is not None else "wrong length or padding"
        )
        raise ImageInputError("bad_data_url", f"invalid base64 payload: {where}", source=source)
    try:
        data = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise ImageInputError("bad_data_url", f"invalid base64 payload: {exc}", source=source) from exc
    loaded = load_image_bytes(data, limits, source=source)
    declared = _MEDIA_TYPE_FORMATS.get(match.group("type").lower())
    if (
        declared is not None
        and declared != loaded.format
        and not (declared == "JPEG" and loaded.format == "MPO")
    ):
        notice = f"data URL says {match.group('type')} but the data is {loaded.format}"
        loaded = LoadedImage(
            loaded.image,
            loaded.original_size,
            loaded.original_mode,
            loaded.format,
            loaded.notices + (notice,),
        )
    return loaded


# ---------------------------------------------------------------------------------------------- remote URLs


def _download_capped(url: str, limits: ImageLimits, client: httpx.Client, source: str) -> bytes:
    deadline = time.monotonic() + limits.remote_timeout_s
    too_large = f"the limit is {format_bytes(limits.max_bytes)} (ImageLimits.max_bytes)"
    # identity: we count raw bytes, so a gzip-compressed body cannot inflate past the cap inside httpx.
    with client.stream("GET", url, headers={"Accept": "image/*", "Accept-Encoding": "identity"}) as response:
        if response.status_code != 200:
            raise ImageInputError(
                "remote_failed", f"server answered HTTP {response.status_code}", source=source
            )
        encoding = response.headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            raise ImageInputError("remote_failed", f"compressed response ({encoding}) refused", source=source)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise ImageInputError(
                "too_large", f"server announces {format_bytes(int(declared))}; {too_large}", source=source
            )
        body = bytearray()
        for chunk in response.iter_raw(_DOWNLOAD_CHUNK):
            body += chunk
            if len(body) > limits.max_bytes:
                raise ImageInputError(
                    "too_large",
                    f"download stopped after {format_bytes(len(body))}; {too_large}",
                    source=source,
                )
            if time.monotonic() > deadline:  # per-read timeouts alone let a slow drip run forever
                raise ImageInputError(
                    "remote_failed",
                    f"download took longer than {limits.remote_timeout_s:g} s (ImageLimits.remote_timeout_s)",
                    source=source,
                )
        return bytes(body)


def load_image_url(url: str, limits: ImageLimits, *, client: httpx.Client | None = None) -> LoadedImage:
    """Fetch an http(s) image when ``limits.allow_remote_urls``; the body is streamed and capped at
    ``max_bytes``. ``client`` is for tests and connection reuse; by default a short-lived one is made."""
    source = _short(url) if isinstance(url, str) else repr(url)
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ImageInputError(
            "bad_url", "expected an http:// or https:// URL with a host name", source=source
        )
    if not limits.allow_remote_urls:
        raise ImageInputError(
            "remote_disabled",
            "fetching images from URLs is disabled (ImageLimits.allow_remote_urls=False); upload the image or "
            "send it as a data URL",
            source=source,
        )
    timeout = httpx.Timeout(limits.remote_timeout_s)
    owned = client is None
    session = client or httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=_MAX_REDIRECTS)
    try:
        data = _download_capped(url, limits, session, source)
    except httpx.TimeoutException as exc:
        raise ImageInputError(
            "remote_failed",
            f"timed out after {limits.remote_timeout_s:g} s (ImageLimits.remote_timeout_s)",
            source=source,
        ) from exc
    except httpx.HTTPError as exc:
        raise ImageInputError("remote_failed", f"could not download: {exc}", source=source) from exc
    finally:
        if owned:
            session.close()
    return load_image_bytes(data, limits, source=source)


# ---------------------------------------------------------------------------------------------- dispatch


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
        parts = urlsplit(ref)
        if parts.netloc not in ("", "localhost"):
            raise ImageInputError("bad_url", "file:// URLs must name a local file", source=_short(ref))
        return load_image_path(url2pathname(parts.path), limits)
    if _URL_SCHEME.match(ref):
        scheme = ref.split(":", 1)[0]
        raise ImageInputError(
            "bad_url", f"unsupported URL scheme {scheme!r}; use http(s), file or data", source=_short(ref)
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
        prog="python -m llava_demo.image_input",
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
        print(f"ok {_short(ref)}: {loaded.format} {width}x{height}" + (f" ({notes})" if notes else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
