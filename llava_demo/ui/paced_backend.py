"""A backend wrapper that slows answers down on purpose (``--stream-delay-ms``), for demos and UI tests.

A tiny CPU model writes hundreds of tokens a second: too fast to watch a stream, and too fast for a UI test to
press Stop while the model is still generating. So:

* in-process models (the backend exposes its torch ``model``) pause before every forward pass, i.e. before
  every generated token, through a forward pre-hook: the *model* is slow, and Stop, which reaches it through
  the ``CancelToken``, ends a generation that is really still running;
* remote servers cannot be slowed down, so the stream is paced instead: a pause before each delta, waiting on
  the caller's token. After a cancel the inner stream is drained unpaced and its own final event (the inner
  backend's ``finish_reason="cancelled"``) is passed on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from llava_demo.backends.base import BackendBase, CancelToken, ChatBackend, SamplingParams, StreamEvent
from vision_common.chat.conversation import Conversation


class PacedBackend(BackendBase):
    """``inner``, ``delay_s`` seconds slower per token (in-process) or per streamed delta (remote)."""

    def __init__(self, inner: ChatBackend, delay_s: float) -> None:
        if not 0 < delay_s < 60:
            raise ValueError(f"PacedBackend.delay_s must be in (0, 60) seconds, got {delay_s!r}")
        self.inner = inner
        self.delay_s = delay_s
        model = getattr(inner, "model", None)
        self._hook = None
        if hasattr(model, "register_forward_pre_hook"):
            self._hook = model.register_forward_pre_hook(self._pause)

    @property
    def paces_model(self) -> bool:
        """True when the model itself is slowed (in-process), False when only the stream is paced."""
        return self._hook is not None

    def _pause(self, module: Any, args: Any) -> None:
        time.sleep(self.delay_s)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def __getattr__(self, attribute: str) -> Any:
        # Backend-specific extras (the local backend's image-token counter, ...) stay reachable.
        if attribute in ("inner", "_hook"):
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
        return events if self.paces_model else self._paced(events, token)

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
        return {**self.inner.health(), "stream_delay_s": self.delay_s, "paces_model": self.paces_model}

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.inner.close()
