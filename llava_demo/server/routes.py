"""The informational endpoints, shaped like SGLang's (serving.md §4): models, health and model info.

``/health`` and ``/health_generate`` stay open even with an API key (SGLang does the same), so load
balancers and routers can probe them; ``/v1/models`` and ``/model_info`` need the key.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from llava_demo.backends.base import SamplingParams
from llava_demo.server.errors import ApiError
from llava_demo.server.state import ServerState, check_api_key, start_job
from vision_common.chat.conversation import Conversation, Message

# A health generation must be cheap: one token of a one-word prompt.
_HEALTH_PROMPT = Conversation((Message("user", "ping"),))
_HEALTH_PARAMS = SamplingParams(temperature=0.0, max_new_tokens=1)
_HEALTH_TIMEOUT_S = 30.0
_HEALTHY_STATUSES = {"ok", "healthy", "ready", "running"}


def _is_healthy(info: Any) -> bool:
    """Backends report a dict; ``ok: False`` or a status outside the healthy words means unhealthy."""
    if not isinstance(info, dict):
        return True
    if info.get("ok") is False:
        return False
    status = info.get("status")
    return status is None or str(status).lower() in _HEALTHY_STATUSES


def _model_card(state: ServerState) -> dict[str, Any]:
    return {
        "id": state.config.model_name,
        "object": "model",
        "created": int(state.started_at),
        "owned_by": "llava_demo",
        "root": state.config.model,
        "parent": None,
    }


def add_info_routes(app: FastAPI, state: ServerState) -> None:
    config = state.config

    @app.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        check_api_key(config, request)
        return JSONResponse({"object": "list", "data": [_model_card(state)]})

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str, request: Request) -> JSONResponse:
        check_api_key(config, request)
        if not config.accepts_model(model_id):
            raise ApiError(
                404, f"model {model_id!r} is not served here", code="model_not_found", param="model"
            )
        return JSONResponse(_model_card(state))

    @app.get("/model_info")
    async def model_info(request: Request) -> JSONResponse:
        check_api_key(config, request)
        return JSONResponse(
            {
                "model_path": config.model,
                "served_model_name": config.model_name,
                "backend": config.backend,
                "is_generation": True,
                "has_image_understanding": True,
                "has_audio_understanding": False,
            }
        )

    @app.get("/health")
    async def health() -> JSONResponse:
        try:
            info = await asyncio.to_thread(state.backend.health)
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", said with its cause
            raise ApiError(
                503, f"backend unhealthy: {type(exc).__name__}: {exc}", code="backend_unavailable"
            ) from exc
        body = {"status": "ok", "backend": info, "load": state.gate.stats()}
        if not _is_healthy(info):
            body["status"] = "unhealthy"
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    @app.get("/health_generate")
    async def health_generate() -> JSONResponse:
        if state.gate.active:
            # A generation is running, so the model evidently works; do not queue behind it.
            return JSONResponse({"status": "ok", "generated": False, "load": state.gate.stats()})
        started = time.perf_counter()
        try:
            job = await start_job(state, _HEALTH_PROMPT, _HEALTH_PARAMS)
            while (event := await job.next_event(_HEALTH_TIMEOUT_S)) is not None and event.kind != "done":
                pass
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as 503 with the cause
            raise ApiError(
                503, f"health generation failed: {type(exc).__name__}: {exc}", code="backend_unavailable"
            ) from exc
        elapsed_ms = round(1000 * (time.perf_counter() - started), 1)
        return JSONResponse({"status": "ok", "generated": True, "latency_ms": elapsed_ms})
