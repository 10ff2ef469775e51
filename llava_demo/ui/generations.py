"""Generations that outlive UI events, and a per-session registry so Stop reaches the backend.

Gradio's ``cancels=`` only stops a generator between yields, and an abandoned generator would keep the
in-process backend's model lock until garbage collection (gradio.md §3). So each answer is produced by a
``GenerationJob`` in its own thread, which always drains the backend stream to its final event; the UI event
only watches the job. Stop sets the job's ``CancelToken``: the local backend stops at the next token and the
HTTP backends close their stream, and the backend's own final event (``finish_reason="cancelled"``) becomes the
outcome that the UI shows and the log records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from llava_demo.backends.base import (
    BackendError,
    CancelToken,
    ChatBackend,
    FinishReason,
    SamplingParams,
    Usage,
)
from vision_common.chat.conversation import Conversation

log = logging.getLogger("llava_demo.ui.generations")
# How long a watcher sleeps between looks when no event arrives (it wakes at once on new text).
_WATCH_POLL_S = 0.25


class SessionBusyError(RuntimeError):
    """The session already has a generation running; one answer at a time per conversation."""


@dataclass(frozen=True)
class Progress:
    """What a watcher sees: the answer so far, notices, and whether the job is over."""

    text: str
    notices: tuple[str, ...]
    done: bool


@dataclass(frozen=True)
class Outcome:
    """How a generation ended. ``finish_reason`` is None when it failed; ``error`` is then the user message."""

    text: str
    finish_reason: FinishReason | None
    usage: Usage | None
    notices: tuple[str, ...]
    error: str | None
    error_code: str | None
    seconds: float
    first_token_s: float | None

    @property
    def cancelled(self) -> bool:
        return self.finish_reason == "cancelled"


class GenerationJob:
    """Streams one answer from ``backend`` in a daemon thread; thread-safe to watch, cancel and wait on."""

    def __init__(
        self,
        backend: ChatBackend,
        conversation: Conversation,
        params: SamplingParams,
        *,
        label: str = "",
    ) -> None:
        self.backend, self.conversation, self.params, self.label = backend, conversation, params, label
        self.cancel_token = CancelToken()
        self._changed = threading.Condition()
        self._parts: list[str] = []
        self._notices: list[str] = []
        self._version = 0
        self._outcome: Outcome | None = None
        self._thread = threading.Thread(target=self._run, name=f"answer-{label or 'job'}", daemon=True)

    def start(self) -> GenerationJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    def wait(self, timeout_s: float | None = None) -> Outcome | None:
        """The outcome once the backend's stream has ended (None if ``timeout_s`` passed first)."""
        self._thread.join(timeout_s)
        return self._outcome

    def progress(self) -> Progress:
        with self._changed:
            return Progress("".join(self._parts), tuple(self._notices), self._outcome is not None)

    def watch(self, poll_s: float = _WATCH_POLL_S) -> Iterator[Progress]:
        """Yield progress whenever the text or notices change, and a last time when the job is over."""
        seen = -1
        while True:
            with self._changed:
                if self._version == seen and self._outcome is None:
                    self._changed.wait(poll_s)
                if self._version == seen and self._outcome is None:
                    continue
                seen = self._version
                snapshot = Progress("".join(self._parts), tuple(self._notices), self._outcome is not None)
            yield snapshot
            if snapshot.done:
                return

    def _run(self) -> None:
        started = time.monotonic()
        first_token_s: float | None = None
        finish: FinishReason | None = None
        usage: Usage | None = None
        error: str | None = None
        code: str | None = None
        try:
            for event in self.backend.stream(self.conversation, self.params, self.cancel_token):
                with self._changed:
                    if event.kind == "delta":
                        # Text that arrives after Stop was already queued by the backend; the answer ends
                        # where the user stopped it.
                        if event.text and not self.cancel_token.cancelled:
                            if first_token_s is None:
                                first_token_s = time.monotonic() - started
                            self._parts.append(event.text)
                    elif event.kind == "notice":
                        self._notices.append(event.text)
                    else:
                        finish, usage = event.finish_reason, event.usage
                    self._version += 1
                    self._changed.notify_all()
            if finish is None:
                error, code = "the backend's stream ended without a final event", "backend_error"
        except BackendError as exc:
            error, code = exc.user_message, exc.code
        except Exception as exc:  # noqa: BLE001 - shown to the user with its real class and message
            log.exception("generation %s failed", self.label)
            error, code = f"{type(exc).__name__}: {exc}", "internal_error"
        with self._changed:
            self._outcome = Outcome(
                text="".join(self._parts),
                finish_reason=finish if error is None else None,
                usage=usage,
                notices=tuple(self._notices),
                error=error,
                error_code=code,
                seconds=time.monotonic() - started,
                first_token_s=first_token_s,
            )
            self._version += 1
            self._changed.notify_all()
        outcome = self._outcome
        log.info(
            "generation finished: session=%s model=%s finish_reason=%s completion_tokens=%s seconds=%.2f%s",
            self.label,
            self.backend.model_id,
            outcome.finish_reason or "error",
            outcome.usage.completion_tokens if outcome.usage else "?",
            outcome.seconds,
            f" error={outcome.error_code}: {outcome.error}" if outcome.error else "",
        )


class SessionGenerations:
    """session id -> its running job, plus Stop requests that arrive before the job starts.

    A UI turn is two events (show the question, then answer it). ``expect`` marks the gap between them, so a
    Stop pressed while the answer waits in Gradio's queue cancels that answer as soon as it starts, and a late
    Stop (after the answer ended) cannot cancel the next question.
    """

    def __init__(self, remembered_sessions: int = 4096) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, GenerationJob] = {}
        # Sessions end without notice (a closed tab), so what is kept per session is capped, oldest first out.
        self._cap = remembered_sessions
        self._expected: OrderedDict[str, bool] = OrderedDict()  # session -> Stop already requested
        self._last: OrderedDict[str, Outcome] = OrderedDict()

    def expect(self, session: str) -> None:
        with self._lock:
            self._expected[session] = False
            _trim(self._expected, self._cap)

    def forget_expected(self, session: str) -> None:
        with self._lock:
            self._expected.pop(session, None)

    def start(self, session: str, job: GenerationJob) -> GenerationJob:
        """Run ``job`` for ``session``; ``SessionBusyError`` when one is already running there."""
        with self._lock:
            current = self._running.get(session)
            if current is not None and current.outcome is None:
                raise SessionBusyError(
                    "an answer is still being written in this conversation; press Stop or wait for it"
                )
            stop_requested = self._expected.pop(session, False)
            self._running[session] = job
        if stop_requested:
            job.cancel()  # the backend still runs and reports the cancel itself
        job.start()
        return job

    def finish(self, session: str, job: GenerationJob) -> None:
        """Record the outcome (after ``job`` ended) and free the session."""
        outcome = job.outcome
        with self._lock:
            if self._running.get(session) is job:
                del self._running[session]
            if outcome is not None:
                self._last[session] = outcome
                self._last.move_to_end(session)
                _trim(self._last, self._cap)

    def stop(self, session: str, wait_s: float = 10.0) -> Outcome | None:
        """Cancel the session's answer (running or still queued) and wait up to ``wait_s`` for the backend to
        end it; returns the outcome, or None when nothing was running yet."""
        with self._lock:
            job = self._running.get(session)
            if job is None and session in self._expected:
                self._expected[session] = True
        if job is None:
            return None
        job.cancel()
        return job.wait(wait_s)

    def running(self, session: str) -> GenerationJob | None:
        with self._lock:
            job = self._running.get(session)
        return job if job is not None and job.outcome is None else None

    def last_outcome(self, session: str) -> Outcome | None:
        with self._lock:
            return self._last.get(session)

    def drop_session(self, session: str) -> None:
        """Forget a closed browser tab (cancelling its answer, if any)."""
        with self._lock:
            job = self._running.pop(session, None)
            self._expected.pop(session, None)
            self._last.pop(session, None)
        if job is not None:
            job.cancel()


def _trim(entries: OrderedDict, cap: int) -> None:
    while len(entries) > cap:
        entries.popitem(last=False)
