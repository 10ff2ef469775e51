"""The embedded index, built in a background thread from app start, with one progress record every visitor
reads (issue 19: the first Retrieve built it for 204 s inside the retrieval queue, so a second visitor saw
only "queue: 1/1"). The build reports each embedded batch (``BuildProgress``), so the line every page shows
reads "Building the embedded SynthWorld index: 42% (12,600 / 30,000 images), 85 s so far ...". While it runs, a
retrieval on the embedded index is answered at once with that line instead of waiting; other indexes and the
chat are not touched."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from react_explorer.index.progress import BuildProgress, ProgressCallback

log = logging.getLogger("react_explorer.ui")


@dataclass(frozen=True)
class BuildState:
    """A snapshot: ``started`` and ``finished`` are ``time.monotonic()`` values or None."""

    started: float | None = None
    finished: float | None = None
    error: str | None = None
    progress: BuildProgress | None = None  # the latest report; None until the first batch

    @property
    def running(self) -> bool:
        return self.started is not None and self.finished is None


class BackgroundBuild:
    """At most one build; ``state()`` is safe to read from any thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BuildState()
        self._thread: threading.Thread | None = None

    def state(self) -> BuildState:
        with self._lock:
            return self._state

    def start(self, build: Callable[[ProgressCallback], object]) -> bool:
        """Run ``build(report)`` in a daemon thread unless one ran or runs already; True when this call started
        it. ``build`` passes its progress records to ``report`` (any thread may read them via ``state()``)."""
        with self._lock:
            if self._state.started is not None:
                return False
            self._state = BuildState(started=self._clock())
            self._thread = threading.Thread(
                target=self._run, args=(build,), name="react-index-build", daemon=True
            )
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> BuildState:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.state()

    def report(self, progress: BuildProgress) -> None:
        with self._lock:
            if self._state.running:
                self._state = replace(self._state, progress=progress)

    def describe(self) -> str:
        """One line for the page ("" before any build)."""
        state, now = self.state(), self._clock()
        if state.started is None:
            return ""
        if state.running:
            done = state.progress.describe() if state.progress else "0% (loading the CLIP)"
            return (
                f"Building the embedded SynthWorld index: {done}, {now - state.started:.0f} s so far (once, a "
                "few minutes on a CPU); the chat and other indexes work meanwhile."
            )
        took = (state.finished or now) - state.started
        if state.error:
            return f"Building the embedded index failed after {took:.0f} s: {state.error}"
        return f"The embedded index was built in {took:.0f} s."

    def _run(self, build: Callable[[ProgressCallback], object]) -> None:
        error = None
        try:
            build(self.report)
        except Exception as exc:  # noqa: BLE001 - reported in the page; the app keeps serving
            log.warning("background build of the embedded index failed", exc_info=exc)
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._state = BuildState(self._state.started, self._clock(), error, self._state.progress)
