"""Cancellation: SIGTERM (and SIGINT) set a flag that the loop checks between updates.

The handler only records the request; the loop finishes the current update, writes a checkpoint and
returns, so a cancelled run never leaves a half-written checkpoint and can continue with ``--resume``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Context manager installing the handlers (main thread only) and restoring the previous ones."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def request(self, signal_number: int = signal.SIGTERM) -> None:
        self.signal_number = signal_number

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        self.request(signal_number)

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be installed from the main thread (e.g. not inside a UI worker thread);
        # there the caller cancels through request() instead.
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
