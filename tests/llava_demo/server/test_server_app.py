"""Server mechanics over real HTTP (uvicorn in a thread) with a scripted backend: response shapes, the SSE
sequence, error statuses, the admission queue, API keys, and cancellation on client disconnect."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from llava_demo.backends.base import (
    BackendError,
    BackendUnavailable,
    ContextOverflowError,
    SamplingParams,
    StreamEvent,
    Usage,
)
from llava_demo.server.app import create_app, render_batch
from llava_demo.server.config import ServerConfig, ServerConfigError
from llava_demo.server.jobs import AdmissionGate, GenerationJob, QueueFullError
from llava_demo.server.responses import ChunkWriter
from llava_demo.server.thread import BackgroundServer
from tests.support.server_fakes import FakeBackend
from vision_common.chat.conversation import Conversation, Message

CHAT = "/v1/chat/completions"
HI = {"messages": [{"role": "user", "content": "hi"}]}


@contextmanager
def serve(backend: FakeBackend, **config) -> Iterator[httpx.Client]:
    with BackgroundServer(create_app(backend, ServerConfig.tiny(**config))) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client


def sse_payloads(lines: list[str]) -> list:
    """The data of each SSE event; the [DONE] sentinel stays a string."""
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def stream_lines(client: httpx.Client, body: dict) -> tuple[int, list]:
    with client.stream("POST", CHAT, json={**body, "stream": True}) as response:
        return response.status_code, sse_payloads(list(response.iter_lines()))


def png_url(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.slow
def test_non_stream_response_and_what_the_backend_receives() -> None:
    backend = FakeBackend(notices=("old turns dropped",))
    body = {
        "model": "default",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url((5, 3))}}]},
            {"role": "user", "content": "what?"},
        ],
        "temperature": 0,
        "max_tokens": 3,
        "stop": ["\n"],
        "seed": 11,
    }
    with serve(backend) as client:
        response = client.post(CHAT, json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == "synthworld-llava-next"
    # max_tokens=3 cut the four scripted tokens: finish_reason "length".
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Hello, world"}
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["prompt_tokens"] == 10 and data["usage"]["completion_tokens"] == 3
    assert data["usage"]["total_tokens"] == 13
    assert data["notices"] == ["old turns dropped"]
    call = backend.calls[0]
    assert (call.params.temperature, call.params.max_new_tokens, call.params.stop, call.params.seed) == (
        0.0,
        3,
        ("\n",),
        11,
    )
    messages = call.conversation.messages
    assert [(m.role, m.text, len(m.images)) for m in messages] == [("system", "sys", 0), ("user", "what?", 1)]
    assert messages[1].images[0].image.size == (5, 3)


@pytest.mark.slow
def test_stream_chunk_sequence_matches_openai() -> None:
    with serve(FakeBackend()) as client:
        status, events = stream_lines(client, {**HI, "stream_options": {"include_usage": True}})
        plain_status, plain = stream_lines(client, HI)
    assert status == 200 and plain_status == 200
    assert events[-1] == "[DONE]" and plain[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    # Deltas that arrive together may share a chunk; the text and the order are what count.
    assert "".join(contents) == "Hello, world!" and all(contents)
    assert chunks[-2]["choices"][0]["delta"] == {} and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["usage"] is None for c in chunks[:-1])
    # Without include_usage: no usage chunk and no usage key at all.
    assert plain[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in plain[:-1])


@pytest.mark.slow
def test_errors_before_the_first_token_get_real_statuses_even_when_streaming() -> None:
    overflow = ContextOverflowError(
        "needs 5000 tokens, context holds 4096", prompt_tokens=5000, max_new_tokens=8, context_length=4096
    )
    cases = [
        (FakeBackend(fail_before=overflow), 400, "context_length_exceeded", "needs 5000 tokens"),
        (
            FakeBackend(fail_before=BackendUnavailable("cannot connect to http://127.0.0.1:9/v1")),
            503,
            "backend_unavailable",
            "cannot connect",
        ),
        (FakeBackend(fail_before=RuntimeError("kaput")), 500, "internal_error", "RuntimeError: kaput"),
    ]
    for backend, status, code, fragment in cases:
        with serve(backend) as client:
            for stream in (False, True):
                response = client.post(CHAT, json={**HI, "stream": stream})
                assert response.status_code == status, response.text
                error = response.json()["error"]
                assert error["code"] == code and fragment in error["message"]
            # Still serving: the health endpoint answers and the slot was released.
            assert client.get("/health").status_code == 200
            assert client.get("/health").json()["load"]["running"] == 0


@pytest.mark.slow
def test_error_mid_stream_is_an_error_event_then_done() -> None:
    backend = FakeBackend(fail_after=(2, BackendError("the GPU fell over")))
    with serve(backend) as client:
        status, events = stream_lines(client, HI)
        non_stream = client.post(CHAT, json=HI)
    assert status == 200
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"]["content"] for e in events[1:-2]) == "Hello,"
    assert events[-2] == {
        "error": {
            "message": "the GPU fell over",
            "type": "server_error",
            "code": "backend_error",
            "param": None,
            "object": "error",
        }
    }
    assert events[-1] == "[DONE]"
    assert non_stream.status_code == 500 and non_stream.json()["error"]["message"] == "the GPU fell over"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (json.dumps({"messages": []}).encode(), 400, "invalid_request"),
        (json.dumps({"messages": [{"role": "user", "content": ""}]}).encode(), 400, "empty_prompt"),
        (json.dumps({**HI, "model": "gpt-4o"}).encode(), 404, "model_not_found"),
        (json.dumps({**HI, "chat_template": "nope"}).encode(), 400, "unknown_template"),
        (json.dumps({**HI, "chat_template": "vicuna_v1"}).encode(), 400, "template_mismatch"),
    ],
)
def test_bad_requests(request_body: bytes, status: int, code: str) -> None:
    backend = FakeBackend()
    with serve(backend) as client:
        response = client.post(CHAT, content=request_body, headers={"content-type": "application/json"})
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert client.post(CHAT, json=HI).status_code == 200
    assert len(backend.calls) == 1  # the bad request never reached the backend


@pytest.mark.slow
def test_a_silent_backend_costs_a_504_not_a_hang() -> None:
    backend = FakeBackend(tokens=("late",), delay_s=3.0)
    with serve(backend, event_timeout_s=0.3) as client:
        for stream in (False, True):
            started = time.monotonic()
            response = client.post(CHAT, json={**HI, "stream": stream})
            assert response.status_code == 504 and response.json()["error"]["code"] == "generation_timeout"
            assert time.monotonic() - started < 2
        assert all(call.cancel.wait(2) for call in backend.calls)


@pytest.mark.slow
def test_oversized_body_is_413_before_parsing() -> None:
    backend = FakeBackend()
    with serve(backend, max_request_bytes=4096) as client:
        big = {"messages": [{"role": "user", "content": "x" * 5000}]}
        response = client.post(CHAT, json=big)
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        assert "4,096 bytes" in response.json()["error"]["message"]
        # Without a Content-Length (chunked upload) the limit holds while reading.
        chunked = client.post(CHAT, content=iter([b'{"messages": [', b" " * 5000, b"]}"]))
        assert chunked.status_code == 413
        assert client.post(CHAT, json=HI).status_code == 200
    assert len(backend.calls) == 1


@pytest.mark.slow
def test_image_sources_follow_the_server_policy(tmp_path: Path) -> None:
    inside = tmp_path / "root" / "ok.png"
    inside.parent.mkdir()
    Image.new("RGB", (4, 4)).save(inside)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)

    def ask(client: httpx.Client, url: str) -> httpx.Response:
        part = {"type": "image_url", "image_url": {"url": url}}
        return client.post(
            CHAT, json={"messages": [{"role": "user", "content": [part, {"type": "text", "text": "q"}]}]}
        )

    with serve(FakeBackend(), image_root=inside.parent) as client:
        assert ask(client, str(inside)).status_code == 200
        assert ask(client, inside.as_uri()).status_code == 200
        denied = ask(client, str(outside))
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "outside_root"
        remote = ask(client, "https://example.com/a.png")
        assert remote.status_code == 400 and remote.json()["error"]["code"] == "remote_disabled"
        bomb = ask(client, png_url((2500, 2000)))  # 5 MP > the tiny config's 4 MP
        assert bomb.status_code == 413 and bomb.json()["error"]["code"] == "decompression_bomb"
        assert bomb.json()["error"]["param"] == "messages[0].content[0]"
    with serve(FakeBackend()) as client:  # no image root: no server files at all
        assert ask(client, str(inside)).json()["error"]["code"] == "local_disabled"


@pytest.mark.slow
def test_queue_full_is_429_and_the_slot_comes_back() -> None:
    backend = FakeBackend(tokens=("x",) * 200, delay_s=0.02)
    with serve(backend, max_concurrency=1, max_queue=0) as client:
        with client.stream("POST", CHAT, json={**HI, "stream": True, "max_tokens": 200}) as slow:
            lines = slow.iter_lines()  # keep the iterator: dropping it closes the connection
            assert next(lines).startswith("data: ")
            busy = client.post(CHAT, json=HI)
            assert busy.status_code == 429
            assert (
                busy.json()["error"]["code"] == "queue_full"
                and "--max-queue 0" in busy.json()["error"]["message"]
            )
            assert busy.headers["retry-after"] == "1"
        # Closing the slow stream cancels it and frees the slot.
        assert backend.calls[0].finished.wait(2)
        deadline = time.monotonic() + 2
        while client.get("/health").json()["load"]["running"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.post(CHAT, json=HI).status_code == 200


@pytest.mark.slow
def test_queued_requests_wait_their_turn() -> None:
    backend = FakeBackend(tokens=("a", "b", "c"), delay_s=0.05)
    results: list[int] = []
    with serve(backend, max_concurrency=1, max_queue=2) as client:
        threads = [
            threading.Thread(target=lambda: results.append(client.post(CHAT, json=HI).status_code))
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert results == [200, 200, 200]
    assert all(call.finished.is_set() for call in backend.calls)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_cancels_the_generation(stream: bool) -> None:
    backend = FakeBackend(tokens=("x",) * 500, delay_s=0.02)
    with serve(backend) as client:
        started = time.monotonic()
        if stream:
            with client.stream("POST", CHAT, json={**HI, "stream": True, "max_tokens": 500}) as response:
                next(response.iter_lines())
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.post(CHAT, json={**HI, "max_tokens": 500}, timeout=0.3)
        call = backend.wait_calls(1)[0]
        assert call.cancel.wait(2), "the generation was not cancelled after the client left"
        assert call.finished.wait(2)
        # 500 tokens at 20 ms would take 10 s; cancelling stopped it long before.
        assert time.monotonic() - started < 3
        assert client.post(CHAT, json=HI).status_code == 200


@pytest.mark.slow
def test_api_key_guards_v1_but_not_health() -> None:
    with serve(FakeBackend(), api_key="sekret") as client:
        assert client.post(CHAT, json=HI).status_code == 401
        wrong = client.post(CHAT, json=HI, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
        assert client.post(CHAT, json=HI, headers={"Authorization": "Bearer sekret"}).status_code == 200
        assert client.get("/v1/models").status_code == 401
        assert client.get("/health").status_code == 200


@pytest.mark.slow
def test_models_health_and_health_generate() -> None:
    with serve(FakeBackend(), served_model_name="llava-tiny") as client:
        models = client.get("/v1/models").json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["llava-tiny"]
        assert client.get("/v1/models/llava-tiny").json()["id"] == "llava-tiny"
        assert client.get("/v1/models/other").status_code == 404
        assert client.get("/model_info").json()["has_image_understanding"] is True
        generated = client.get("/health_generate")
        assert generated.status_code == 200 and generated.json()["generated"] is True
        assert client.get("/nowhere").json()["error"]["message"] == "GET /nowhere: Not Found"
    with serve(FakeBackend(health_error=BackendUnavailable("SGLang at :30000 is down"))) as client:
        sick = client.get("/health")
        assert sick.status_code == 503 and "SGLang at :30000 is down" in sick.json()["error"]["message"]
    with serve(FakeBackend(fail_before=BackendUnavailable("no model"))) as client:
        assert client.get("/health_generate").status_code == 503


@pytest.mark.slow
def test_stream_interval_merges_deltas_and_never_holds_back_the_end() -> None:
    # 40 deltas over ~200 ms with a 60 ms interval: a handful of chunks (first one at once, then about one
    # per interval), the same text in the same order.
    with serve(FakeBackend(tokens=("t",) * 40, delay_s=0.005), stream_interval_ms=60) as client:
        status, events = stream_lines(client, {**HI, "max_tokens": 64})
    contents = [c["choices"][0]["delta"].get("content") for c in events[1:-2]]
    assert status == 200 and "".join(contents) == "t" * 40
    assert 2 <= len(contents) <= 8, contents
    # A 1 s interval: the stream ends as soon as the backend does, not an interval later.
    with serve(FakeBackend(tokens=("a", "b", "c"), delay_s=0.01), stream_interval_ms=1000) as client:
        started = time.monotonic()
        status, events = stream_lines(client, HI)
        elapsed = time.monotonic() - started
    assert status == 200 and events[-1] == "[DONE]" and elapsed < 0.8, elapsed
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in events[1:-1]) == "abc"


def test_config_validation() -> None:
    with pytest.raises(ServerConfigError, match="max_concurrency"):
        ServerConfig(max_concurrency=0)
    with pytest.raises(ServerConfigError, match="port"):
        ServerConfig(port=70000)
    with pytest.raises(ServerConfigError, match="image_root"):
        ServerConfig(image_root=Path("/definitely/not/here"))
    with pytest.raises(ServerConfigError, match="api_key"):
        ServerConfig(api_key="  ")
    with pytest.raises(ServerConfigError, match="stream_interval_ms"):
        ServerConfig(stream_interval_ms=-1)
    assert ServerConfig().host == "127.0.0.1" and ServerConfig().loopback_only
    assert not ServerConfig(host="0.0.0.0").loopback_only


def test_generation_job_hands_out_what_arrived_in_one_batch_then_the_error() -> None:
    async def scenario() -> None:
        backend = FakeBackend(fail_after=(2, BackendError("late failure")))
        finished = asyncio.Event()
        conversation = Conversation((Message("user", "hi"),))
        job = GenerationJob(backend, conversation, SamplingParams.tiny(), on_finish=finished.set).start()
        await asyncio.wait_for(finished.wait(), 5)  # the thread is done: every event has arrived
        assert [e.text for e in await job.next_events(1)] == ["Hello", ","]  # one batch, error held back
        with pytest.raises(BackendError, match="late failure"):
            await job.next_events(1)
        assert await job.next_events(1) == [] and await job.next_event(1) is None

    asyncio.run(scenario())


def test_admission_gate_counts() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(max_concurrency=1, max_queue=1)
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        assert gate.stats() == {"running": 1, "queued": 1, "max_concurrency": 1, "max_queue": 1}
        with pytest.raises(QueueFullError, match="1 generation\\(s\\) running and 1 queued"):
            await gate.acquire()
        gate.release()
        await asyncio.wait_for(waiter, 1)
        assert (gate.active, gate.waiting) == (1, 0)
        gate.release()
        with pytest.raises(RuntimeError, match="without a matching acquire"):
            gate.release()

    asyncio.run(scenario())


def test_render_batch_merges_deltas_and_attaches_notices() -> None:
    writer = ChunkWriter("m", include_usage=True, completion_id="chatcmpl-x", created=1)
    usage = Usage(prompt_tokens=5, completion_tokens=3)
    events = [
        StreamEvent.delta("a"),
        StreamEvent.delta(""),
        StreamEvent.delta("b"),
        StreamEvent.notice("note"),
        StreamEvent.delta("c"),
    ]
    data, finished = render_batch(writer, events)
    chunks = [
        json.loads(part) for part in data.decode().removeprefix("data: ").split("\n\ndata: ") if part.strip()
    ]
    assert not finished
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": "ab"}, {"content": "c"}]
    assert "notices" not in chunks[0] and chunks[1]["notices"] == ["note"]
    data, finished = render_batch(
        writer, [StreamEvent.delta("d"), StreamEvent.done("stop", usage), StreamEvent.delta("late")]
    )
    chunks = [
        json.loads(part)
        for part in data.decode().strip().split("\n\n")
        for part in [part.removeprefix("data: ")]
    ]
    assert finished
    assert [c["choices"] and c["choices"][0]["delta"] for c in chunks] == [{"content": "d"}, {}, []]
    assert chunks[1]["choices"][0]["finish_reason"] == "stop" and chunks[2]["usage"]["total_tokens"] == 8
    assert render_batch(writer, [StreamEvent.delta("")]) == (b"", False)
