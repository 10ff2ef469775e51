"""A small client for any OpenAI-compatible ``/v1/chat/completions`` endpoint (SGLang, vLLM, OpenAI).

Transient failures (HTTP 5xx, 429, connection errors, timeouts) are retried with exponential backoff; any other
4xx is a configuration problem (bad key, unknown model) and raises at once with the server's message. A reply
that arrives but cannot be read is returned as a :class:`ChatReply` with ``error`` set, so the caller counts
and drops it instead of stopping the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


class LLMEndpointError(RuntimeError):
    """The endpoint refused the request (4xx) or stayed unreachable after every retry."""


@dataclass(frozen=True)
class LLMClientConfig:
    """Connection settings. ``endpoint`` may be a server root, a ``.../v1`` base or the full route."""

    endpoint: str
    model: str
    api_key: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 1.0  # delay before retry k is backoff_s * 2**k
    temperature: float = 0.7
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {self.endpoint!r}")
        if not self.model.strip():
            raise ValueError("model must be a non-empty served model name")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")

    @classmethod
    def tiny(cls, endpoint: str = "http://127.0.0.1:30000") -> LLMClientConfig:
        """For tests against a local stub: short timeout, near-zero backoff."""
        return cls(endpoint=endpoint, model="default", timeout_s=5.0, max_retries=2, backoff_s=0.01)

    @property
    def url(self) -> str:
        return chat_completions_url(self.endpoint)


def chat_completions_url(endpoint: str) -> str:
    """``http://h:p`` / ``http://h:p/v1`` / ``http://h:p/v1/chat/completions`` -> the chat-completions route."""
    base = endpoint.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


@dataclass(frozen=True)
class ChatReply:
    text: str | None
    finish_reason: str | None = None
    error: str | None = None  # set when the body could not be read as a chat completion
    attempts: int = 1


def _is_transient(status: int) -> bool:
    return status >= 500 or status == 429


def parse_completion(body: bytes) -> ChatReply:
    """Extract ``choices[0].message.content`` from a chat-completion body, or describe why not."""
    try:
        doc: Any = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ChatReply(text=None, error="reply body is not JSON")
    try:
        choice = doc["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ChatReply(text=None, error="reply has no choices[0].message.content")
    if not isinstance(content, str):
        return ChatReply(text=None, error="reply content is not a string")
    return ChatReply(text=content, finish_reason=choice.get("finish_reason"))


class ChatClient:
    """Thread-safe (one shared ``httpx.Client``); use as a context manager or call :meth:`close`."""

    def __init__(self, config: LLMClientConfig, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self._http = httpx.Client(timeout=config.timeout_s, headers=headers)

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def complete(self, messages: list[dict[str, str]]) -> ChatReply:
        config = self.config
        payload = {
            "model": config.model,
            "messages": messages,
            "temperature": config.temperature,
            "max_tokens": config.max_tokens,
        }
        last_problem = ""
        for attempt in range(config.max_retries + 1):
            if attempt:
                self._sleep(config.backoff_s * 2 ** (attempt - 1))
            try:
                response = self._http.post(config.url, json=payload)
            except httpx.TransportError as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                reply = parse_completion(response.content)
                return ChatReply(reply.text, reply.finish_reason, reply.error, attempts=attempt + 1)
            excerpt = response.text[:300].strip()
            if _is_transient(response.status_code):
                last_problem = f"HTTP {response.status_code}: {excerpt}"
                continue
            raise LLMEndpointError(
                f"{config.url} rejected the request with HTTP {response.status_code} (model {config.model!r}): "
                f"{excerpt or '<empty body>'}"
            )
        raise LLMEndpointError(
            f"{config.url} failed {config.max_retries + 1} time(s); last problem: {last_problem}"
        )
