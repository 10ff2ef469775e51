"""The chat-backend interface: sampling parameters, stream events, errors, and the ``ChatBackend`` protocol.

Every backend (in-process transformers, SGLang, any OpenAI-compatible server) streams a ``Conversation`` as
``StreamEvent`` values: zero or more ``notice`` events (remarks a user should see, e.g. that old turns were
dropped to fit the context), ``delta`` events whose texts concatenate to the answer, and exactly one final
``done`` event with the finish reason and token usage. Failures raise a ``BackendError`` subclass whose
message is written for the user and whose ``code`` / ``http_status`` tell a server how to answer, instead of
the original demo's catch-all "NETWORK ERROR" (llava.md §2).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from vision_common.chat.conversation import Conversation

BackendKind = Literal["local", "sglang", "openai"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("local", "sglang", "openai")
EventKind = Literal["delta", "notice", "done"]
EVENT_KINDS: tuple[EventKind, ...] = ("delta", "notice", "done")
# "stop": the model ended or a stop string matched; "length": max_new_tokens reached; "cancelled": the
# caller's CancelToken fired. The first two are OpenAI's names, so a server can pass them through.
FinishReason = Literal["stop", "length", "cancelled"]
FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "cancelled")
# OpenAI's documented temperature range; above 2 sampling is noise.
MAX_TEMPERATURE = 2.0
MAX_STOP_STRINGS = 16
# torch.manual_seed takes an unsigned 64-bit seed; a larger one raised inside the generation (a 500).
MAX_SEED = 2**64 - 1


# -- errors ------------------------------------------------------------------------------------------------


class BackendError(RuntimeError):
    """A request failed. ``str(err)`` is the user-facing message (what failed and why, never a bare trace).

    ``code`` is a stable machine-readable name and ``http_status`` the status an API server should answer
    with; subclasses set both.
    """

    code: str = "backend_error"
    http_status: int = 500

    @property
    def user_message(self) -> str:
        return str(self)


class BackendUnavailable(BackendError):
    """The backend cannot be reached or is not running (connection refused, server died, not started)."""

    code = "backend_unavailable"
    http_status = 503


class BadRequestError(BackendError):
    """The request itself is wrong (bad image, empty conversation, unsupported option); retrying won't help."""

    code = "bad_request"
    http_status = 400


class ContextOverflowError(BadRequestError):
    """Even the newest user turn alone does not fit the model's context; the numbers are in the message."""

    code = "context_length_exceeded"

    def __init__(self, message: str, *, prompt_tokens: int, max_new_tokens: int, context_length: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.context_length = context_length


class GenerationTimeout(BackendError):
    """No token arrived within the backend's timeout (a stuck generation thread or a silent server)."""

    code = "generation_timeout"
    http_status = 504


# -- request values ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults are the LLaVA demo's (temperature 0.2, top-p 0.7, 512 new tokens).

    ``temperature=0`` means greedy decoding (``top_p`` is then ignored). ``stop`` strings end the answer and
    are not part of it; backends add their template's stop strings to these. ``seed`` makes sampling
    repeatable where the backend supports it.
    """

    temperature: float = 0.2
    top_p: float = 0.7
    max_new_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"SamplingParams.temperature must be a number, got {t!r}")
        if not 0.0 <= t <= MAX_TEMPERATURE:
            raise ValueError(f"SamplingParams.temperature must be in [0, {MAX_TEMPERATURE}], got {t}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise ValueError(f"SamplingParams.top_p must be a number, got {p!r}")
        if not 0.0 < p <= 1.0:
            raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {p}")
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"SamplingParams.max_new_tokens must be a positive integer, got {n!r}")
        stop = self.stop
        if isinstance(stop, str):
            # A bare string would otherwise be split into one stop string per character.
            stop = (stop,)
        stop = tuple(stop)
        if not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"SamplingParams.stop must be non-empty strings, got {stop!r}")
        if len(stop) > MAX_STOP_STRINGS:
            raise ValueError(
                f"SamplingParams.stop allows at most {MAX_STOP_STRINGS} strings, got {len(stop)}"
            )
        object.__setattr__(self, "stop", stop)
        s = self.seed
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED):
            raise ValueError(
                f"SamplingParams.seed must be a non-negative integer below 2**64 or None, got {s!r}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @classmethod
    def tiny(cls, **overrides: Any) -> SamplingParams:
        """Greedy and short, for tests: deterministic and fast on a tiny model."""
        values: dict[str, Any] = {"temperature": 0.0, "max_new_tokens": 8}
        values.update(overrides)
        return cls(**values)


class CancelToken:
    """A flag a caller sets to stop a generation; safe to share between threads.

    Backends check it between tokens (local) or register a callback that closes their HTTP stream (remote)
    and then end the stream with ``finish_reason="cancelled"``. Cancelling twice is harmless; a token cannot
    be reset, use a new one.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def add_callback(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` (in the cancelling thread) when cancelled, at once if already cancelled.

        Returns a function that unregisters it; call that when the work is over.
        """
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._remove(callback)
        callback()
        return lambda: None

    def _remove(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds pass; True when cancelled."""
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


# -- stream values -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Token counts of one request. ``prompt_tokens`` includes the ``image_tokens`` (AnyRes placeholders)."""

    prompt_tokens: int
    completion_tokens: int
    image_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "completion_tokens", "image_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Usage.{name} must be a non-negative integer, got {value!r}")
        if self.image_tokens > self.prompt_tokens:
            raise ValueError(
                f"Usage.image_tokens ({self.image_tokens}) cannot exceed prompt_tokens ({self.prompt_tokens})"
            )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class StreamEvent:
    """One item of a backend stream: a text ``delta``, a user-visible ``notice``, or the final ``done``."""

    kind: EventKind
    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"StreamEvent.kind must be one of {EVENT_KINDS}, got {self.kind!r}")
        if not isinstance(self.text, str):
            raise ValueError(f"StreamEvent.text must be a str, got {type(self.text).__name__}")
        if self.kind == "done":
            if self.finish_reason not in FINISH_REASONS:
                raise ValueError(
                    f"a done event needs finish_reason in {FINISH_REASONS}, got {self.finish_reason!r}"
                )
        elif self.finish_reason is not None or self.usage is not None:
            raise ValueError(f"only a done event carries finish_reason/usage, not a {self.kind} event")
        if self.kind == "notice" and not self.text:
            raise ValueError("a notice event needs text")

    @classmethod
    def delta(cls, text: str) -> StreamEvent:
        return cls("delta", text)

    @classmethod
    def notice(cls, text: str) -> StreamEvent:
        return cls("notice", text)

    @classmethod
    def done(cls, finish_reason: FinishReason, usage: Usage | None = None) -> StreamEvent:
        return cls("done", finish_reason=finish_reason, usage=usage)


@dataclass(frozen=True)
class Completion:
    """A whole answer, collected from a stream."""

    text: str
    finish_reason: FinishReason
    usage: Usage | None = None
    notices: tuple[str, ...] = field(default=())


def collect(events: Iterable[StreamEvent]) -> Completion:
    """Join a stream into a ``Completion``; a stream that ends without ``done`` is a ``BackendError``."""
    parts: list[str] = []
    notices: list[str] = []
    for event in events:
        if event.kind == "delta":
            parts.append(event.text)
        elif event.kind == "notice":
            notices.append(event.text)
        else:
            return Completion("".join(parts), event.finish_reason or "stop", event.usage, tuple(notices))
    raise BackendError("the backend's stream ended without a final event (the answer may be incomplete)")


# -- the interface -----------------------------------------------------------------------------------------


@runtime_checkable
class ChatBackend(Protocol):
    """What the UI, the CLI and the API server talk to. Implementations must be thread-safe.

    ``stream`` raises ``BackendError`` subclasses before or during iteration; the final event is always
    ``done``. Images in the conversation are ``ImageRef`` values (PIL images, paths, data URLs, ...) that the
    backend loads through ``vision_common.images.load``.
    """

    @property
    def name(self) -> str: ...

    @property
    def model_id(self) -> str: ...

    def stream(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]: ...

    def complete(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Completion: ...

    def health(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class BackendBase:
    """Shared plumbing for implementations: ``complete`` via ``stream`` and context-manager closing."""

    def stream(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        raise NotImplementedError

    def complete(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Completion:
        return collect(self.stream(conversation, params, cancel))

    def close(self) -> None:
        """Release resources; idempotent. Subclasses extend it."""

    def __enter__(self) -> BackendBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_conversation(conversation: Conversation) -> None:
    """The request-level rules every backend shares: a ``Conversation`` ending with a non-empty user turn."""
    if not isinstance(conversation, Conversation):
        raise BadRequestError(f"expected a Conversation, got {type(conversation).__name__}")
    if conversation.last_role != "user":
        raise BadRequestError(
            f"the conversation must end with a user message to be answered (it ends with "
            f"{conversation.last_role or 'nothing'})"
        )
    last = conversation.messages[-1]
    if not last.text.strip() and not last.images:
        raise BadRequestError("the last user message is empty: write a prompt or attach an image")
