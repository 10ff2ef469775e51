"""Like/dislike feedback appended to a local JSONL file, one record per click.

Each record is written with one ``write`` on a file opened in append mode (``O_APPEND``), so concurrent
sessions never interleave parts of two lines and a crash leaves at most a missing record, never half of one.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vision_common.atomic import OutputNotWritableError


class FeedbackLog:
    """Appends JSON records to ``path`` (its folder is created on the first record)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``record`` plus a ``time`` stamp as one line; returns what was written."""
        full = {"time": round(time.time(), 3), **record}
        line = (json.dumps(full, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputNotWritableError(f"feedback log {self.path}: {exc.strerror or exc}") from exc
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return full


def feedback_record(
    *, liked: Any, index: Any, answer: str, question: str, images: list[str], model: str, session: str
) -> dict[str, Any]:
    """The record for one click: the answer and its question, image file names (not pixels), the model."""
    return {
        "type": "like" if liked is True else "dislike" if liked is False else str(liked),
        "index": index,
        "model": model,
        "question": question,
        "answer": answer,
        "images": [Path(image).name for image in images],
        "session": session,
    }
