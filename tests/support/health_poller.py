"""Polling a server's ``/health`` from a process of its own while something heavy is sent to it, and the
server's memory from /proc; shared by the refusal test and ``bench/server_text_bound.py``.

The poller must not share a process with the sender: sending a 50 MB body from Python copies it with the GIL
held (h11 joins the framing and the body into one ``bytes``), which stalls a poller thread in the same process
for as long as the copy takes, whatever the server does. Such client-side stalls were part of the 284-395 ms
first reported for the server (issue 19).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Run by ``python -c URL``: poll URL/health every 10 ms until stdin closes, then print [[start, seconds], ...]
# with ``start`` in time.time() seconds, so the caller can keep the polls that overlap its request.
_POLLER = """
import json, sys, threading, time
import httpx
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
polls = []
with httpx.Client(base_url=sys.argv[1], timeout=600) as client:
    client.get("/health")  # connection set-up: not counted
    print("ready", flush=True)
    while not done.is_set():
        start, began = time.time(), time.perf_counter()
        client.get("/health")
        polls.append([start, time.perf_counter() - began])
        time.sleep(0.01)
print(json.dumps(polls), flush=True)
"""


class HealthPolls:
    """The ``/health`` latencies the poller process measured; filled when the ``health_poller`` block ends."""

    def __init__(self) -> None:
        self.polls: list[tuple[float, float]] = []

    def overlapping(self, start: float, end: float) -> list[float]:
        """Latencies (seconds) of the polls in flight at some time in [start, end] (``time.time()``)."""
        return [seconds for began, seconds in self.polls if began <= end and began + seconds >= start]


@contextmanager
def health_poller(url: str, *, ready_timeout_s: float = 60.0) -> Iterator[HealthPolls]:
    """Poll ``url``/health from another process while the block runs (it starts once the first answer came)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _POLLER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    result = HealthPolls()
    try:
        line = process.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"the /health poller did not start (it said {line!r})")
        yield result
    finally:
        out, _ = process.communicate("", timeout=ready_timeout_s)
    result.polls = [(start, seconds) for start, seconds in json.loads(out or "[]")]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def reset_peak_rss(pid: int) -> float:
    """Start a new peak-RSS window for ``pid`` (Linux: writing 5 to clear_refs resets VmHWM), so a peak from
    loading the model is not counted as the request's; returns the current RSS in MB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024
