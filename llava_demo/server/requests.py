"""Parse an OpenAI ``POST /v1/chat/completions`` body into a typed request, and its images into a
``Conversation``.

``parse_chat_request`` is pure (JSON in, ``ChatRequest`` out, ``ApiError`` naming the field on bad input).
``build_conversation`` decodes the images through ``vision_common.images.load`` (the one safe door) and is
meant to run in a worker thread because decoding a large image takes tens of milliseconds.

Accepted shape (serving.md §3): ``messages`` with ``system`` / ``developer`` / ``user`` / ``assistant`` roles;
content is a string or a list of ``text`` and (user only) ``image_url`` parts. Consecutive messages of the
same role are merged (texts joined by a newline), so a client may send an image and a question as two user
messages. Sampling: ``temperature``, ``top_p``, ``max_tokens`` or ``max_completion_tokens``, ``stop``,
``seed``; streaming: ``stream`` and ``stream_options.include_usage``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from llava_demo.backends.base import SamplingParams
from llava_demo.server.errors import ApiError, from_image_error
from vision_common.chat.conversation import Conversation, ConversationError, Message, Role
from vision_common.images.limits import ImageInputError, ImageLimits, LoadedImage
from vision_common.images.load import load_image

_ROLE_ALIASES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
# Fields whose presence would change what a client expects back; silently ignoring them would mislead.
_UNSUPPORTED_WHEN_SET = ("tools", "functions", "tool_choice", "function_call", "audio", "prediction")


@dataclass(frozen=True)
class ImagePart:
    """An image reference as the client sent it, with where it was (for error messages)."""

    url: str
    param: str


@dataclass(frozen=True)
class RequestMessage:
    role: Role
    text: str
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request; images are still references until ``build_conversation``."""

    model: str | None
    messages: tuple[RequestMessage, ...]
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False
    chat_template: str | None = None
    """SGLang-style extension: the template the client expects; checked against the served one."""


def _bad(message: str, param: str | None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON, or a 400 that quotes where the JSON broke."""
    if not raw.strip():
        raise _bad("the request body is empty; send a JSON object with 'messages'", None, "invalid_json")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise _bad(f"the request body is not UTF-8 text: {exc.reason}", None, "invalid_json") from exc
    except json.JSONDecodeError as exc:
        raise _bad(
            f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            None,
            "invalid_json",
        ) from exc
    except RecursionError as exc:
        # b"[" * 100_000 is valid-looking JSON that exhausts the decoder's recursion limit: a 400, not a 500.
        raise _bad("the request body nests arrays or objects too deeply", None, "invalid_json") from exc
    except ValueError as exc:
        # An integer literal of more than 4,300 digits (Python's int-conversion limit) is refused by json.loads.
        raise _bad(
            f"the request body holds a value JSON cannot represent here: {exc}", None, "invalid_json"
        ) from exc


def _optional(body: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int subclass: `"max_tokens": true` must not mean 1.
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise _bad(f"'{key}' must be {what}, got a boolean", key)
    if not isinstance(value, kinds):
        raise _bad(f"'{key}' must be {what}, got {type(value).__name__}", key)
    return value


def _parse_content(content: Any, role: Role, param: str) -> tuple[str, tuple[ImagePart, ...]]:
    if isinstance(content, str):
        return content, ()
    if content is None and role == "assistant":
        return "", ()
    if not isinstance(content, list):
        raise _bad(
            f"{param}.content must be a string or a list of parts, got {type(content).__name__}", param
        )
    texts: list[str] = []
    images: list[ImagePart] = []
    for index, part in enumerate(content):
        where = f"{param}.content[{index}]"
        if not isinstance(part, Mapping):
            raise _bad(f"{where} must be an object with a 'type', got {type(part).__name__}", where)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad(f"{where}.text must be a string", where)
            texts.append(text)
        elif kind == "image_url":
            if role != "user":
                raise _bad(f"{where}: only user messages may carry images (this one is {role})", where)
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, Mapping) else ref
            if not isinstance(url, str) or not url.strip():
                raise _bad(f"{where}.image_url.url must be a non-empty string", where)
            images.append(ImagePart(url, where))
        else:
            raise _bad(f"{where}: unsupported content part type {kind!r}; use 'text' or 'image_url'", where)
    return "\n".join(texts), tuple(images)


def _parse_messages(raw: Any) -> tuple[RequestMessage, ...]:
    if raw is None:
        raise _bad("'messages' is required: a non-empty list of {role, content} objects", "messages")
    if not isinstance(raw, list) or not raw:
        raise _bad("'messages' must be a non-empty list of {role, content} objects", "messages")
    merged: list[RequestMessage] = []
    for index, item in enumerate(raw):
        param = f"messages[{index}]"
        if not isinstance(item, Mapping):
            raise _bad(f"{param} must be an object with 'role' and 'content'", param)
        raw_role = item.get("role")
        # A non-string role (a list, an object) is a 400 like any unknown one (schemathesis found it a 500).
        role = _ROLE_ALIASES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise _bad(
                f"{param}.role must be one of {sorted(_ROLE_ALIASES)}, got {item.get('role')!r}", param
            )
        if "content" not in item:
            raise _bad(f"{param} has no 'content'", param)
        text, images = _parse_content(item["content"], role, param)
        if merged and merged[-1].role == role:
            previous = merged[-1]
            joined = "\n".join(t for t in (previous.text, text) if t)
            merged[-1] = RequestMessage(role, joined, previous.images + images)
        else:
            merged.append(RequestMessage(role, text, images))
    last = merged[-1]
    if last.role != "user":
        raise _bad(
            f"the last message must come from the user (it is {last.role}); there is nothing to answer",
            "messages",
        )
    if not last.text.strip() and not last.images:
        raise _bad("the last user message is empty: send a prompt or an image", "messages", "empty_prompt")
    return tuple(merged)


def _parse_max_tokens(body: Mapping[str, Any], default: int) -> int:
    legacy = _optional(body, "max_tokens", int, "a positive integer")
    current = _optional(body, "max_completion_tokens", int, "a positive integer")
    if legacy is not None and current is not None and legacy != current:
        raise _bad(
            f"'max_tokens' ({legacy}) and 'max_completion_tokens' ({current}) disagree; send one of them",
            "max_tokens",
        )
    value, name = (current, "max_completion_tokens") if current is not None else (legacy, "max_tokens")
    if value is None:
        return default
    if value < 1:
        raise _bad(f"'{name}' must be at least 1, got {value}", name)  # the field the client sent
    return value


def _parse_stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("'stop' must be a string or a list of strings", "stop")
    if any(not s for s in stops):
        raise _bad("'stop' strings must not be empty", "stop")
    return tuple(stops)


def _check_unsupported(body: Mapping[str, Any]) -> None:
    for key in _UNSUPPORTED_WHEN_SET:
        if body.get(key) not in (None, "none", [], {}):
            raise _bad(
                f"'{key}' is not supported by this server (LLaVA chat only)", key, "unsupported_parameter"
            )
    n = body.get("n")
    if n is not None and n != 1:
        raise _bad(f"'n' must be 1 (one answer per request), got {n!r}", "n", "unsupported_parameter")
    if body.get("logprobs"):
        raise _bad("'logprobs' is not supported by this server", "logprobs", "unsupported_parameter")
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") not in (None, "text"):
        raise _bad(
            "only 'response_format': {'type': 'text'} is supported",
            "response_format",
            "unsupported_parameter",
        )


def parse_chat_request(body: Any, *, default_max_tokens: int) -> ChatRequest:
    """Validate a decoded JSON body. Unknown fields are ignored (as SGLang does); ones that change the
    expected answer (tools, n > 1, logprobs) are refused."""
    if not isinstance(body, Mapping):
        raise _bad(f"the request body must be a JSON object, got {type(body).__name__}", None)
    _check_unsupported(body)
    model = _optional(body, "model", str, "a string")
    messages = _parse_messages(body.get("messages"))
    stream = bool(_optional(body, "stream", bool, "true or false"))
    options = _optional(body, "stream_options", Mapping, "an object")
    include_usage = False
    if options is not None:
        if not stream:
            raise _bad("'stream_options' is only allowed when 'stream' is true", "stream_options")
        include_usage = bool(_optional(options, "include_usage", bool, "true or false"))
    defaults = SamplingParams()
    temperature = _optional(body, "temperature", (int, float), "a number in [0, 2]")
    top_p = _optional(body, "top_p", (int, float), "a number in (0, 1]")
    seed = _optional(body, "seed", int, "a non-negative integer")
    try:
        params = SamplingParams(
            temperature=defaults.temperature if temperature is None else float(temperature),
            top_p=defaults.top_p if top_p is None else float(top_p),
            max_new_tokens=_parse_max_tokens(body, default_max_tokens),
            stop=_parse_stop(body.get("stop")),
            seed=seed,
        )
    except ValueError as exc:
        # SamplingParams names the field: "SamplingParams.temperature must be in [0, 2.0], got 3.0".
        raise _bad(str(exc).replace("SamplingParams.", "", 1), None) from exc
    chat_template = _optional(body, "chat_template", str, "a template name")
    return ChatRequest(model, messages, params, stream, include_usage, chat_template)


def build_conversation(request: ChatRequest, limits: ImageLimits) -> tuple[Conversation, tuple[str, ...]]:
    """Decode every image (4xx ``ApiError`` naming the part on failure) and build the conversation.

    Returns the conversation with ``LoadedImage`` handles and the image notices (animated GIF first frame,
    CMYK conversion, ...) prefixed with the part they belong to.
    """
    messages: list[Message] = []
    notices: list[str] = []
    for message in request.messages:
        loaded: list[LoadedImage] = []
        for part in message.images:
            try:
                image = load_image(part.url, limits)
            except ImageInputError as exc:
                raise from_image_error(exc, part.param) from exc
            notices.extend(f"{part.param}: {notice}" for notice in image.notices)
            # The notices were taken here, named by request part; the backend must not repeat them.
            loaded.append(replace(image, notices=()))
        messages.append(Message(message.role, message.text, tuple(loaded)))
    try:
        conversation = Conversation(tuple(messages))
    except ConversationError as exc:
        raise _bad(f"messages: {exc}", "messages", "invalid_conversation") from exc
    return conversation, tuple(notices)
