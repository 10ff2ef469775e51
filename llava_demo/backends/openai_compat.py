"""A streaming client for any OpenAI-compatible ``/v1/chat/completions`` server, as a ``ChatBackend``.

Used by the ``openai`` kind (vLLM, OpenAI, this project's own server) and by the ``sglang`` kind. Images
are validated locally (``image_input`` limits) and sent as data URLs in ``image_url`` parts. Every failure
becomes a ``BackendError`` subclass with a message that says what happened: connection refused and a
server dying mid-answer are ``BackendUnavailable``, an error object inside the stream carries the server's
own message. The ``httpx.Client`` holds no per-request state, so the first request after a server restart
works (a dead pooled connection is discarded, never reused).
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from llava_demo.backends.answer_text import LeadingWhitespaceTrimmer
from llava_demo.backends.base import (
    BackendBase,
    BackendError,
    BackendUnavailable,
    BadRequestError,
    CancelToken,
    FinishReason,
    GenerationTimeout,
    SamplingParams,
    StreamEvent,
    Usage,
    check_conversation,
)
from llava_demo.backends.images import image_data_url, prepare_images
from llava_demo.backends.sse import DONE_SENTINEL, error_message, iter_sse_data, parse_chunk
from vision_common.chat.conversation import Conversation
from vision_common.images.load import ImageLimits


@dataclass(frozen=True)
class OpenAICompatConfig:
    """Where the server is and how to talk to it."""

    base_url: str = "http://127.0.0.1:30000/v1"
    """The API root; a bare ``http://host:port`` gets ``/v1`` appended."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer <key>`` (SGLang ``--api-key``, vLLM, OpenAI)."""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0
    """Longest silence between two stream chunks (the first one included) before ``GenerationTimeout``."""
    image_format: Literal["PNG", "JPEG", "WEBP"] = "PNG"
    """Encoding for images that are not already data URLs (PNG is lossless)."""
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    multi_image_modalities: bool = False
    """Mark every image part ``"modalities": "multi-images"`` when a request has several (SGLang's LLaVA
    needs it; OpenAI does not know the field)."""
    extra_body: Mapping[str, Any] = field(default_factory=dict)
    """Extra request fields, e.g. SGLang's ``regex``; they may not override the fields built here."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalise_base_url(self.base_url))
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"OpenAICompatConfig.{name} must be a positive number, got {value!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ValueError("OpenAICompatConfig.api_key must be a non-empty string or None")
        if self.image_format not in ("PNG", "JPEG", "WEBP"):
            raise ValueError(
                f"OpenAICompatConfig.image_format must be PNG, JPEG or WEBP, got {self.image_format!r}"
            )
        if not isinstance(self.image_limits, ImageLimits):
            raise ValueError("OpenAICompatConfig.image_limits must be an ImageLimits")
        reserved = sorted(set(self.extra_body) & _RESERVED_FIELDS)
        if reserved:
            raise ValueError(f"OpenAICompatConfig.extra_body may not set {reserved}; use SamplingParams")
        object.__setattr__(self, "extra_body", MappingProxyType(dict(self.extra_body)))

    @classmethod
    def tiny(cls, base_url: str, **overrides: Any) -> OpenAICompatConfig:
        """Short timeouts and small image caps, for tests against a local server."""
        values: dict[str, Any] = {
            "base_url": base_url,
            "connect_timeout_s": 2.0,
            "read_timeout_s": 5.0,
            "image_limits": ImageLimits.tiny(),
        }
        values.update(overrides)
        return cls(**values)


_RESERVED_FIELDS = frozenset(
    {"model", "messages", "stream", "stream_options", "max_tokens", "temperature", "top_p", "stop", "seed"}
)


def normalise_base_url(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; no trailing slash; only http(s)."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("base_url must be a non-empty URL such as http://127.0.0.1:30000/v1")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {url!r}")
    path = parts.path.rstrip("/") or "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def build_messages(
    conversation: Conversation, image_urls: Sequence[str], *, multi_image_modalities: bool = False
) -> list[dict[str, Any]]:
    """OpenAI messages: system/assistant contents are strings (SGLang requires it), user turns with images
    are ``image_url`` parts (in order, before the text, where LLaVA places them) plus one text part."""
    if len(image_urls) != len(conversation.images):
        raise ValueError(f"{len(image_urls)} image URLs for {len(conversation.images)} images")
    several = multi_image_modalities and len(image_urls) > 1
    urls = iter(image_urls)
    messages: list[dict[str, Any]] = []
    for message in conversation.messages:
        if not message.images:
            messages.append({"role": message.role, "content": message.text})
            continue
        parts: list[dict[str, Any]] = []
        for _ in message.images:
            part: dict[str, Any] = {"type": "image_url", "image_url": {"url": next(urls)}}
            if several:
                part["modalities"] = "multi-images"
            parts.append(part)
        parts.append({"type": "text", "text": message.text})
        messages.append({"role": message.role, "content": parts})
    return messages


def build_request(
    model: str, messages: list[dict[str, Any]], params: SamplingParams, extra_body: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        **extra_body,
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def _status_error(status: int, detail: str, source: str) -> BackendError:
    """Map a non-200 answer to our error classes, keeping the server's own message."""
    message = f"{source} answered HTTP {status}: {detail}"
    if status in (400, 413, 422):
        return BadRequestError(message)
    if status in (401, 403):
        return BackendError(f"{message} (check the API key)")
    if status in (429, 502, 503, 504):
        return BackendUnavailable(message)
    return BackendError(message)


def _response_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        return error_message(body.get("error") or body.get("detail") or body)
    return str(body)[:300]


def _shutdown_socket(response: httpx.Response) -> None:
    """Interrupt a read blocked in another thread: ``shutdown`` wakes it, a plain close would not."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class OpenAICompatBackend(BackendBase):
    """Streams chat completions from ``config.base_url``; ``model`` is the served model name."""

    name = "openai"

    def __init__(self, model: str, config: OpenAICompatConfig | None = None) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be the served model name (e.g. 'default' for SGLang)")
        self._model_id = model
        self.config = config or OpenAICompatConfig()
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        timeout = httpx.Timeout(
            connect=self.config.connect_timeout_s,
            read=self.config.read_timeout_s,
            write=self.config.read_timeout_s,
            pool=self.config.connect_timeout_s,
        )
        self._client = httpx.Client(base_url=self.config.base_url, headers=headers, timeout=timeout)

    @property
    def model_id(self) -> str:
        return self._model_id

    def stream(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        """Validate and encode now (errors raise here), then return the event iterator that does the I/O."""
        if self._client.is_closed:
            raise BackendUnavailable(f"the {self.name} backend for {self.config.base_url} is closed")
        check_conversation(conversation)
        params = params or SamplingParams()
        images = prepare_images(conversation.images, self.config.image_limits)
        urls = [
            image_data_url(ref, loaded, self.config.image_format)
            for ref, loaded in zip(conversation.images, images.images, strict=True)
        ]
        messages = build_messages(
            conversation, urls, multi_image_modalities=self.config.multi_image_modalities
        )
        body = build_request(self._model_id, messages, params, self.config.extra_body)
        return self._events(body, images.notices, cancel or CancelToken())

    def _events(
        self, body: dict[str, Any], notices: tuple[str, ...], cancel: CancelToken
    ) -> Iterator[StreamEvent]:
        for notice in notices:
            yield StreamEvent.notice(notice)
        if cancel.cancelled:
            yield StreamEvent.done("cancelled")
            return
        source = f"the server at {self.config.base_url}"
        finish: FinishReason | None = None
        usage: Usage | None = None
        trimmer = LeadingWhitespaceTrimmer()  # SGLang and others send the tokenizer's leading space too
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                unregister = cancel.add_callback(lambda: _shutdown_socket(response))
                try:
                    if response.status_code != 200:
                        response.read()
                        raise _status_error(response.status_code, _response_detail(response), source)
                    for payload in iter_sse_data(response.iter_lines()):
                        if cancel.cancelled:
                            break
                        if payload.strip() == DONE_SENTINEL:
                            break
                        chunk = parse_chunk(payload, source=source)
                        text = trimmer.feed(chunk.text)
                        if text:
                            yield StreamEvent.delta(text)
                        finish = chunk.finish_reason or finish
                        usage = chunk.usage or usage
                finally:
                    unregister()
        except httpx.TransportError as exc:
            if not cancel.cancelled:
                raise _transport_error(exc, source, self.config.read_timeout_s) from exc
        if cancel.cancelled:
            yield StreamEvent.done("cancelled", usage)
            return
        if finish is None:
            raise BackendUnavailable(f"{source} ended the stream before the answer was complete")
        yield StreamEvent.done(finish, usage)

    def health(self) -> dict[str, Any]:
        """``GET /models``; never raises (an unreachable server is reported, not thrown)."""
        report: dict[str, Any] = {"backend": self.name, "model": self._model_id, "url": self.config.base_url}
        try:
            response = self._client.get("/models", timeout=self.config.connect_timeout_s)
        except httpx.TransportError as exc:
            return {**report, "status": "unreachable", "detail": f"{type(exc).__name__}: {exc}"}
        if response.status_code != 200:
            return {
                **report,
                "status": "error",
                "detail": f"HTTP {response.status_code}: {_response_detail(response)}",
            }
        try:
            served = [entry.get("id") for entry in response.json().get("data", [])]
        except (ValueError, AttributeError):
            served = []
        return {**report, "status": "ok", "served_models": served}

    def close(self) -> None:
        self._client.close()


def _transport_error(exc: httpx.TransportError, source: str, read_timeout_s: float) -> BackendError:
    if isinstance(exc, httpx.ConnectError):
        return BackendUnavailable(f"cannot connect to {source}: {exc}; is it running?")
    if isinstance(exc, httpx.ReadTimeout):
        return GenerationTimeout(f"{source} sent nothing for {read_timeout_s:g} s; the request was abandoned")
    if isinstance(exc, httpx.TimeoutException):
        return BackendUnavailable(f"{source} did not accept the request in time ({type(exc).__name__})")
    return BackendUnavailable(
        f"{source} closed the connection before the answer was complete (it may have crashed or "
        f"restarted): {type(exc).__name__}: {exc}"
    )
