"""The FastAPI application: OpenAI-compatible chat completions in front of any ``ChatBackend``.

Endpoints (the SGLang subset clients use, serving.md §3-4): ``POST /v1/chat/completions`` (stream and
non-stream) here; ``GET /v1/models[/{id}]``, ``/health``, ``/health_generate`` and ``/model_info`` in
``server_routes``. ``create_app`` takes a ready backend and does no I/O itself; ``llava_demo.server.cli`` builds
the backend from the command line and runs uvicorn.

Request life: parse (400s) -> decode images in a worker thread (4xx with the loader's code) -> wait for a
generation slot (429 when the queue is full) -> start the backend stream in a worker thread -> wait for its
first event, so failures that happen before any text (context overflow, unreachable backend) still get a
real HTTP status even for ``stream: true`` -> stream or collect. A client that disconnects cancels the
generation through its ``CancelToken``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from llava_demo.backends.base import BackendError, ChatBackend, StreamEvent
from llava_demo.server.body import read_body
from llava_demo.server.config import ServerConfig
from llava_demo.server.errors import ApiError, from_backend_error, from_unexpected
from llava_demo.server.jobs import AdmissionGate, ClientDisconnected, DisconnectWatcher, GenerationJob
from llava_demo.server.requests import build_conversation, parse_chat_request, parse_json_body
from llava_demo.server.responses import DONE_EVENT, ChunkWriter, completion_body, new_completion_id
from llava_demo.server.routes import add_info_routes
from llava_demo.server.schema import install_openapi
from llava_demo.server.state import (
    ServerState,
    check_api_key,
    check_requested_template,
    error_response,
    served_template_name,
    start_job,
)
from llava_demo.server.text_bounds import IMAGE_PART_MARKER, check_text_bounds, refuse_text_only_size

log = logging.getLogger("llava_demo.server.cli")
# Status for a response nobody will read (the client is gone); nginx's name for it.
CLIENT_CLOSED_REQUEST = 499
# Bodies above this are parsed in a worker thread (about 2 ms of JSON; smaller ones cost less than the hop).
LARGE_BODY_BYTES = 256 * 1024
_NO_DONE = "the backend's stream ended without a final event (the answer may be incomplete)"


def job_error(error: BaseException) -> ApiError:
    """Map whatever a generation raised to the API error the client gets."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, BackendError):
        return from_backend_error(error)
    if isinstance(error, TimeoutError):
        return ApiError(
            504, "the backend produced nothing within the server's event timeout", code="generation_timeout"
        )
    log.error("unexpected failure during generation", exc_info=error)
    return from_unexpected(error)


async def _collect(
    job: GenerationJob, first: list[StreamEvent], timeout: float
) -> tuple[str, StreamEvent, tuple[str, ...]]:
    """The whole answer: (text, the done event, backend notices)."""
    parts: list[str] = []
    notices: list[str] = []
    events = first
    while events:
        for event in events:
            if event.kind == "done":
                return "".join(parts), event, tuple(notices)
            (parts if event.kind == "delta" else notices).append(event.text)
        events = await job.next_events(timeout)
    raise BackendError(_NO_DONE)


def render_batch(writer: ChunkWriter, events: list[StreamEvent]) -> tuple[bytes, bool]:
    """The SSE bytes for events that arrived together, and whether the answer is finished.

    Consecutive deltas merge into one chunk: when the model outpaces the loop, clients parse fewer chunks.
    """
    out: list[bytes] = []
    text = ""
    for event in events:
        if event.kind == "delta":
            text += event.text
            continue
        if text:
            out.append(writer.content(text))
            text = ""
        if event.kind == "notice":
            writer.add_notice(event.text)
            continue
        out.append(writer.finish(event.finish_reason))
        if writer.include_usage:
            out.append(writer.usage(event.usage))
        return b"".join(out), True
    if text:
        out.append(writer.content(text))
    return b"".join(out), False


async def _sse_stream(
    job: GenerationJob, first: list[StreamEvent], writer: ChunkWriter, timeout: float, interval_s: float
) -> AsyncIterator[bytes]:
    """The SSE body, one write per batch of events, at most one write per ``interval_s`` after the first. A
    failure after the first chunk becomes an ``error`` event; the end is always [DONE]."""
    try:
        yield writer.role()
        events = first
        while True:
            if not events:
                raise BackendError(_NO_DONE)
            data, finished = render_batch(writer, events)
            if data:
                yield data
            if finished:
                break
            if interval_s > 0 and data:
                # Let the deltas pile up: the generation thread keeps the GIL instead of handing it to the
                # loop once per token, and the client parses one chunk per interval.
                await job.settle(interval_s)
            events = await job.next_events(timeout)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the client as an error event
        yield writer.error(job_error(exc))
    finally:
        # Stops the generation if the client went away (CancelledError passes through here) or it failed.
        job.cancel()
    yield DONE_EVENT


async def _chat_completions(state: ServerState, request: Request) -> Response:
    config = state.config
    check_api_key(config, request)
    body = await read_body(request, config.max_request_bytes, IMAGE_PART_MARKER)
    bounds = config.text_bounds()
    # Before joining or parsing: a 50 MB prompt is refused from its size and the chunk-by-chunk marker search.
    refuse_text_only_size(body.size, body.has_marker, bounds)
    if body.size > LARGE_BODY_BYTES:
        # The join and json.loads each hold the GIL for their whole C call, so a worker thread only lets the
        # loop run between them; a text-only body too long for the bounds was refused above without either.
        raw = await asyncio.to_thread(lambda: parse_json_body(body.join()))
    else:
        raw = parse_json_body(body.join())
    parsed = parse_chat_request(raw, default_max_tokens=config.default_max_tokens)
    check_text_bounds(parsed, bounds)  # before the backend tokenizes anything
    if not config.accepts_model(parsed.model):
        raise ApiError(
            404,
            f"model {parsed.model!r} is not served here; this server serves {config.model_name!r} "
            "(see GET /v1/models)",
            code="model_not_found",
            param="model",
        )
    check_requested_template(state, parsed.chat_template)
    # Decoding takes milliseconds per image: keep the event loop free meanwhile (tokenizing happens in the
    # generation thread).
    conversation, notices = await asyncio.to_thread(build_conversation, parsed, config.image_limits())
    timeout = config.event_timeout_s
    job: GenerationJob | None = None
    async with DisconnectWatcher(request.receive) as watcher:
        try:
            job = await watcher.race(start_job(state, conversation, parsed.params))
            first = await watcher.race(job.next_events(timeout))
            if not parsed.stream:
                text, done, backend_notices = await watcher.race(_collect(job, first, timeout))
        except ClientDisconnected:
            if job is not None:
                job.cancel()
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except BaseException as exc:
            if job is not None:
                job.cancel()
            if isinstance(exc, (BackendError, TimeoutError)):
                raise job_error(exc) from exc
            raise
    if not parsed.stream:
        payload = completion_body(
            completion_id=new_completion_id(),
            created=int(time.time()),
            model=config.model_name,
            text=text,
            finish_reason=done.finish_reason,
            usage=done.usage,
            notices=notices + backend_notices,
        )
        return JSONResponse(payload)
    writer = ChunkWriter(config.model_name, include_usage=parsed.include_usage, pending_notices=list(notices))
    return StreamingResponse(
        _sse_stream(job, first, writer, timeout, config.stream_interval_ms / 1000),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        # Runs even when the body generator never started (client gone before the first byte).
        background=BackgroundTask(job.cancel),
    )


def create_app(backend: ChatBackend, config: ServerConfig) -> FastAPI:
    """The ASGI app serving ``backend``. The caller owns the backend (and closes it)."""
    app = FastAPI(
        title="LLaVA-NeXT OpenAI-compatible server",
        description="OpenAI chat completions with images, SGLang-style health endpoints.",
        docs_url="/docs",  # the request/response schema (llava_demo.server.schema)
        redoc_url=None,
    )
    gate = AdmissionGate(config.max_concurrency, config.max_queue)
    state = ServerState(backend, config, gate, served_template=served_template_name(backend))
    app.state.llava = state

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = f"{request.method} {request.url.path}: {error.detail}"
        return error_response(ApiError(error.status_code, message, code="http_error"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(ApiError(400, f"invalid request: {error.errors()}", code="invalid_request"))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=error)
        return error_response(from_unexpected(error))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        try:
            return await _chat_completions(state, request)
        except ApiError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - answered here: Starlette's catch-all would re-raise it
            return error_response(job_error(exc))

    add_info_routes(app, state)
    install_openapi(app)
    return app
