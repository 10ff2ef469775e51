"""A scripted ``ChatBackend`` for server-mechanics tests (no model): it replays events, can fail at a chosen
point, sleeps between tokens, and records what it was asked and whether it was cancelled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llava_demo.backends.base import (
    BackendBase,
    BackendError,
    CancelToken,
    SamplingParams,
    StreamEvent,
    Usage,
    check_conversation,
)
from vision_common.chat.conversation import Conversation


@dataclass
class FakeCall:
    conversation: Conversation
    params: SamplingParams
    cancel: CancelToken
    finished: threading.Event = field(default_factory=threading.Event)


class FakeBackend(BackendBase):
    """Streams ``tokens`` as deltas (after ``notices``), then ``done`` with usage (prompt 7 + 3 per image).

    ``fail_before`` raises before any event; ``fail_after`` raises after that many deltas; ``delay_s`` sleeps
    before each delta (checking the cancel token, as real backends do between tokens).
    """

    name = "fake"

    def __init__(
        self,
        tokens: tuple[str, ...] = ("Hello", ",", " world", "!"),
        *,
        notices: tuple[str, ...] = (),
        delay_s: float = 0.0,
        fail_before: BaseException | None = None,
        fail_after: tuple[int, BaseException] | None = None,
        health_error: BaseException | None = None,
    ) -> None:
        self.tokens, self.notices, self.delay_s = tokens, notices, delay_s
        self.fail_before, self.fail_after, self.health_error = fail_before, fail_after, health_error
        self.calls: list[FakeCall] = []

    @property
    def model_id(self) -> str:
        return "fake-model"

    def stream(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        check_conversation(conversation)
        call = FakeCall(conversation, params or SamplingParams(), cancel or CancelToken())
        self.calls.append(call)
        if self.fail_before is not None:
            call.finished.set()
            raise self.fail_before
        return self._events(call)

    def _events(self, call: FakeCall) -> Iterator[StreamEvent]:
        try:
            yield from (StreamEvent.notice(n) for n in self.notices)
            usage_prompt = 7 + 3 * len(call.conversation.images)
            sent = 0
            for token in self.tokens[: call.params.max_new_tokens]:
                if self.fail_after is not None and sent == self.fail_after[0]:
                    raise self.fail_after[1]
                if self.delay_s and call.cancel.wait(self.delay_s):
                    yield StreamEvent.done(
                        "cancelled", Usage(usage_prompt, sent, 3 * len(call.conversation.images))
                    )
                    return
                yield StreamEvent.delta(token)
                sent += 1
            reason = "length" if len(self.tokens) > call.params.max_new_tokens else "stop"
            yield StreamEvent.done(reason, Usage(usage_prompt, sent, 3 * len(call.conversation.images)))
        finally:
            call.finished.set()

    def health(self) -> dict[str, Any]:
        if self.health_error is not None:
            raise self.health_error
        return {"backend": "fake", "status": "ok"}

    def wait_calls(self, count: int, timeout_s: float = 5.0) -> list[FakeCall]:
        deadline = time.monotonic() + timeout_s
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.calls


def backend_error(message: str = "boom") -> BackendError:
    return BackendError(message)
