"""Shared pieces of the SGLang conformance tests: the cache folder (or a skip when the registry is
unreachable), one subprocess run of ``sglang_probe.py``, and a replay server that records the requests our
client sends and answers with bytes SGLang's own code produced."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llava_demo.server.thread import BackgroundServer
from tests.support.sglang_env import RegistryUnreachable, SGLangEnv, UnsupportedPython, ensure_sglang_env

PROBE = Path(__file__).with_name("sglang_probe.py")
PROBE_TIMEOUT_S = 300.0


def sglang_env_or_skip() -> SGLangEnv:
    """The folder with SGLang's code; a skip only when pip could not reach the package index (or on Python
    3.10, for which the pinned sglang has no wheel; CI runs 3.11)."""
    try:
        return ensure_sglang_env()
    except RegistryUnreachable as exc:
        pytest.skip(f"the package index is unreachable, so SGLang's code cannot be installed: {exc}")
    except UnsupportedPython as exc:
        pytest.skip(str(exc))


def run_probe(env: SGLangEnv, ops: dict[str, Any]) -> dict[str, Any]:
    """Run SGLang's code on ``ops`` in a subprocess (see sglang_probe.py) and return its results."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(PROBE), str(env.path)],
        input=json.dumps(ops),
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise AssertionError(f"sglang_probe failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    results = json.loads(done.stdout)
    assert results["version"] == env.version, f"probe imported sglang {results['version']}, not {env.version}"
    assert results["sglang_file"].startswith(str(env.path)), results["sglang_file"]
    return results


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int
    body: bytes
    media_type: str = "text/event-stream"


@dataclass
class ReplayState:
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)


def _replay_app(state: ReplayState) -> Starlette:
    async def chat(request: Request) -> Response:
        state.requests.append(json.loads(await request.body()))
        reply = state.replies.pop(0)
        return Response(reply.body, status_code=reply.status, media_type=reply.media_type)

    async def models(request: Request) -> Response:
        body = {"object": "list", "data": [{"id": "default", "object": "model", "owned_by": "sglang"}]}
        return Response(json.dumps(body), media_type="application/json")

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)]
    )


@contextmanager
def replay_server(replies: list[Reply]) -> Iterator[tuple[str, ReplayState]]:
    """An HTTP server on a free port answering ``POST /v1/chat/completions`` with ``replies`` in order and
    recording each request body."""
    state = ReplayState(replies=list(replies))
    with BackgroundServer(_replay_app(state)) as server:
        yield server.url, state


def sse_payloads(lines: list[str]) -> list[Any]:
    """The JSON of each ``data:`` event (``[DONE]`` stays a string)."""
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]
