"""What the request handlers share: the per-app state record, the API-key check and slot admission."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse

from llava_demo.backends.base import ChatBackend, SamplingParams
from llava_demo.server.config import ServerConfig
from llava_demo.server.errors import ApiError
from llava_demo.server.jobs import AdmissionGate, GenerationJob, QueueFullError
from vision_common.chat.conversation import Conversation
from vision_common.chat.templates import UnknownTemplateError, get_template


@dataclass
class ServerState:
    """Everything a request handler needs; one per app (``app.state.llava``), never a module global."""

    backend: ChatBackend
    config: ServerConfig
    gate: AdmissionGate
    served_template: str | None = None
    """The template name the backend renders with, when it says (the local backend does)."""
    started_at: float = field(default_factory=time.time)


def served_template_name(backend: ChatBackend) -> str | None:
    """The local backend exposes its ``TemplateChoice``; remote backends render elsewhere (None)."""
    renderer = getattr(getattr(backend, "template", None), "renderer", None)
    name = getattr(renderer, "name", None)
    return name if isinstance(name, str) else None


def check_requested_template(state: ServerState, requested: str | None) -> None:
    """A request may name the template it expects (``chat_template``); it is chosen at start-up, so an
    unknown name or one that differs from the served template is a 400 that says so."""
    if requested is None:
        return
    try:
        wanted = get_template(requested).name
    except UnknownTemplateError as exc:
        raise ApiError(400, f"chat_template: {exc}", code="unknown_template", param="chat_template") from exc
    served = state.served_template
    try:
        if served is not None and get_template(served).name == wanted:
            return
    except UnknownTemplateError:
        pass  # the checkpoint's own template: no builtin name matches it
    raise ApiError(
        400,
        f"chat_template {requested!r}: this server renders prompts with {served or 'the backend template'!r}; "
        "the template is chosen when the server starts (--template), not per request",
        code="template_mismatch",
        param="chat_template",
    )


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": "1"} if error.status in (429, 503) else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def check_api_key(config: ServerConfig, request: Request) -> None:
    """401 unless the request carries ``Authorization: Bearer <api_key>`` (when a key is configured)."""
    if config.api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    # compare_digest: the comparison time does not reveal how much of the key matched.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), config.api_key.encode()):
        raise ApiError(
            401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
        )


async def start_job(state: ServerState, conversation: Conversation, params: SamplingParams) -> GenerationJob:
    """Wait for a generation slot (429 at once when the queue is full) and start the generation thread.

    The slot is released when the thread ends, however the HTTP side ends.
    """
    try:
        await state.gate.acquire()
    except QueueFullError as exc:
        raise ApiError(429, str(exc), code="queue_full") from exc
    try:
        return GenerationJob(state.backend, conversation, params, on_finish=state.gate.release).start()
    except BaseException:
        state.gate.release()
        raise
