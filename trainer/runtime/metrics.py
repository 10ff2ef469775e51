"""``metrics.jsonl``: one JSON line per update, flushed as it is written, so a crash loses at most a line."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, TextIO

from vision_common.atomic import atomic_write_text


def truncate_after_step(path: str | os.PathLike[str], step: int) -> int:
    """Drop lines for updates after ``step`` (a resumed run redoes them); return how many lines remain.

    Lines that are not JSON objects with an integer ``step`` (e.g. a line cut off by a crash) are dropped too.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
    return len(kept)


def _json_safe(value: Any) -> Any:
    # json.dumps would write NaN/Infinity, which is not JSON; a diverged loss must still be readable.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends records to ``metrics.jsonl``; use as a context manager (closes the file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO | None = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            raise ValueError(f"{self.path}: metrics log is closed")
        self._handle.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a ``metrics.jsonl``; a final line cut off by a crash is ignored, any other bad line
    raises ``ValueError`` naming the file and line."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a JSON line: {exc}") from None
    return records
