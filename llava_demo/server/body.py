"""Reading a request body without stalling the event loop.

The body arrives in chunks (tens of KB each). Issue 19 measured what a 50 MB text-only request still cost the
loop after the character bounds: joining the chunks into one ``bytes`` (about 60 ms: 50 MB of fresh pages) and
one substring search for image parts over the joined body (about 50 ms), back to back in one callback, so
``/health`` waited 130 ms (up to 395 ms on a loaded machine). Here the search runs on each chunk as it
arrives (microseconds each, between awaits) and the chunks are joined only for a body that will be parsed, so
a body refused from its size and markers is never copied at all.

Joining and JSON parsing hold the GIL (they are single C calls), so a worker thread does not free the loop
for them; not doing them is what keeps a refusal cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from llava_demo.server.errors import ApiError


class MarkerScan:
    """Whether ``marker`` occurs in a byte stream fed chunk by chunk, including across chunk boundaries."""

    def __init__(self, marker: bytes) -> None:
        if not marker:
            raise ValueError("MarkerScan needs a non-empty marker")
        self.marker = marker
        self.found = False
        self._tail = (
            b""  # the last len(marker) - 1 bytes seen: a marker may start there and end in the next chunk
        )

    def feed(self, chunk: bytes) -> None:
        if self.found or not chunk:
            return
        keep = len(self.marker) - 1
        # Only the seam needs a copy (at most 2 * keep bytes); the chunk itself is searched in place.
        seam = self._tail + chunk[:keep]
        self.found = self.marker in seam or self.marker in chunk
        if keep == 0:
            return
        self._tail = chunk[-keep:] if len(chunk) >= keep else (self._tail + chunk)[-keep:]


@dataclass
class ReceivedBody:
    """A whole request body, still in the chunks it arrived in."""

    chunks: list[bytes]
    size: int
    has_marker: bool  # whether the scanned-for marker occurs anywhere in the body

    def join(self) -> bytes:
        return b"".join(self.chunks)


async def read_body(request: Request, limit: int, marker: bytes) -> ReceivedBody:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes, and whether
    ``marker`` occurs in it (searched chunk by chunk while it arrives)."""
    too_large = ApiError(
        413,
        f"the request body exceeds the server's limit of {limit:,} bytes (--max-request-bytes); "
        "send fewer or smaller images",
        code="request_too_large",
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    scan = MarkerScan(marker)
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        scan.feed(chunk)
        chunks.append(chunk)
    return ReceivedBody(chunks, size, scan.found)
