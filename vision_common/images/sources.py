"""Where image bytes come from: local files, ``data:`` URLs and http(s) URLs, each read under the caps in
:class:`ImageLimits` before :func:`load_image_bytes` decodes them.

Files are resolved (symlinks, ``..``) before the ``local_root`` check and opened without following a late
symlink or blocking on a FIFO; data URLs are size-checked before base64 decoding; downloads are streamed,
counted and cut off at ``max_bytes`` and at the ``remote_timeout_s`` deadline.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import stat
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from vision_common.images.decode import load_image_bytes
from vision_common.images.limits import ImageInputError, ImageLimits, LoadedImage, format_bytes

# data:[image/<subtype>][;param=value]*;base64,  -- RFC 2397, restricted to base64 images.
_DATA_URL_HEADER = re.compile(
    r"data:(?P<type>image/[a-z0-9.+-]+)(?P<params>(?:;[a-z0-9_.+-]+=[a-z0-9_.+-]+)*);base64", re.IGNORECASE
)
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
_MAX_REDIRECTS = 5
_DOWNLOAD_CHUNK = 64 * 1024


def shorten(text: str, limit: int = 80) -> str:
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
    source = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
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
            problem = f"media type must be image/*, got {shorten(header[5:].split(';')[0], 40)!r}"
        elif not header.lower().endswith(";base64"):
            problem = "only base64 data URLs are accepted (';base64' is missing)"
        else:
            problem = f"malformed header {shorten(header, 60)!r}"
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
    # The strict decode below rejects characters outside the alphabet; padding is only checked here (the
    # decoder ignores data after it). A full-payload regex would cost as much as the decode itself.
    misplaced_padding = raw.find(b"=", 0, max(len(raw) - 2, 0)) != -1 or raw[-2:-1] == b"=" != raw[-1:]
    data = None
    if not len(payload) % 4 and not misplaced_padding:
        try:
            data = base64.b64decode(raw, validate=True)
        except binascii.Error:
            data = None
    if data is None:
        bad = next(
            (i for i, ch in enumerate(payload) if not (ch.isascii() and (ch.isalnum() or ch in "+/="))), None
        )
        where = (
            f"character {payload[bad]!r} at position {bad}" if bad is not None else "wrong length or padding"
        )
        raise ImageInputError("bad_data_url", f"invalid base64 payload: {where}", source=source)
    loaded = load_image_bytes(data, limits, source=source)
    declared = _MEDIA_TYPE_FORMATS.get(match.group("type").lower())
    actual = "JPEG" if loaded.format == "MPO" else loaded.format  # MPO is a JPEG with extra pictures
    if declared is not None and declared != actual:
        notice = f"data URL says {match.group('type')} but the data is {loaded.format}"
        loaded = dataclasses.replace(loaded, notices=loaded.notices + (notice,))
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
    source = shorten(url) if isinstance(url, str) else repr(url)
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
        host = parts.hostname if parts is not None else None
    except ValueError:  # e.g. an unclosed IPv6 bracket or a bad port
        parts, host = None, None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
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
