"""A backend wrapper that paces the stream: a pause before each delta (``--stream-delay-ms``).

A tiny CPU model writes hundreds of tokens a second, too fast to watch a stream or to press Stop in a UI test.
The pause waits on the caller's ``CancelToken``, and the same token goes to the wrapped backend, so Stop still
reaches the real backend: after a cancel the wrapper drains the inner stream without pausing and passes on the
inner backend's own final event (``finish_reason="cancelled"`` from the backend, not from this wrapper).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llava_demo.backends.base import BackendBase, CancelToken, ChatBackend, SamplingParams, StreamEvent
from llava_demo.conversation import Conversation


class PacedBackend(BackendBase):
    """``inner`` with ``delay_s`` seconds before each streamed delta (until cancelled)."""

    def __init__(self, inner: ChatBackend, delay_s: float) -> None:
        if not 0 < delay_s < 60:
            raise ValueError(f"PacedBackend.delay_s must be in (0, 60) seconds, got {delay_s!r}")
        self.inner = inner
        self.delay_s = delay_s

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def __getattr__(self, attribute: str) -> Any:
        # Backend-specific extras (the local backend's image-token counter, ...) stay reachable.
        if attribute == "inner":
            raise AttributeError(attribute)
        return getattr(self.inner, attribute)

    def stream(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        token = cancel or CancelToken()
        events = self.inner.stream(conversation, params, token)  # validation errors raise here, unpaced
        return self._paced(events, token)

    def _paced(self, events: Iterator[StreamEvent], cancel: CancelToken) -> Iterator[StreamEvent]:
        try:
            for event in events:
                if event.kind == "delta" and not cancel.cancelled:
                    cancel.wait(self.delay_s)
                yield event
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    def health(self) -> dict[str, Any]:
        return {**self.inner.health(), "stream_delay_s": self.delay_s}

    def close(self) -> None:
        self.inner.close()
