"""Cutting streamed text at stop strings without ever showing a partial stop string.

A stop string can arrive split over several chunks ("</" then "s>"), so text that could still be the start
of a stop string is held back until the next chunk decides. Pure: no model, no threads.
"""

from __future__ import annotations

from collections.abc import Iterable


def find_stop(text: str, stops: Iterable[str]) -> int:
    """Index of the earliest stop-string occurrence in ``text``, or -1."""
    positions = [found for stop in stops if (found := text.find(stop)) >= 0]
    return min(positions) if positions else -1


def held_back_length(text: str, stops: Iterable[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class StopStringFilter:
    """Feed streamed chunks; get back the text that is safe to show and whether a stop string matched.

    Once a stop string matched, the text before it has been returned and everything after is dropped.
    ``flush`` returns the held-back tail when the stream ends without a match.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(dict.fromkeys(s for s in stops if s))
        self._pending = ""
        self.stopped = False

    def feed(self, chunk: str) -> str:
        if self.stopped or not chunk:
            return ""
        text = self._pending + chunk
        cut = find_stop(text, self.stops)
        if cut >= 0:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        keep = held_back_length(text, self.stops)
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        tail, self._pending = self._pending, ""
        return "" if self.stopped else tail
