"""Chat backends behind one interface (``base.ChatBackend``): in-process transformers (``local``), SGLang
(``sglang``, attach or launch) and any OpenAI-compatible server (``openai``). See docs/backends.md.

Only the interface and ``make_backend`` are imported here; ``make_backend`` imports the in-process backend
(torch, transformers) only when it is asked for, so a client of a remote server never loads torch.
"""

from __future__ import annotations

from llava_demo.backends.base import (
    BACKEND_KINDS,
    BackendBase,
    BackendError,
    BackendKind,
    BackendUnavailable,
    BadRequestError,
    CancelToken,
    ChatBackend,
    Completion,
    ContextOverflowError,
    FinishReason,
    GenerationTimeout,
    SamplingParams,
    StreamEvent,
    Usage,
    check_conversation,
    collect,
)
from llava_demo.backends.factory import make_backend

__all__ = [
    "BACKEND_KINDS",
    "BackendBase",
    "BackendError",
    "BackendKind",
    "BackendUnavailable",
    "BadRequestError",
    "CancelToken",
    "ChatBackend",
    "Completion",
    "ContextOverflowError",
    "FinishReason",
    "GenerationTimeout",
    "SamplingParams",
    "StreamEvent",
    "Usage",
    "check_conversation",
    "collect",
    "make_backend",
]
