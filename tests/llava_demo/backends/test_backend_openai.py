"""The OpenAI-compatible client: SSE parsing, request shape, and behaviour against a live fake server
(tests/support/fake_openai_server.py): role/delta/finish/usage chunks, mid-stream errors, auth, a server killed
mid-stream and restarted, cancellation of a blocked read, read timeouts."""

from __future__ import annotations

import base64
import io
import threading
import time

import pytest
from PIL import Image

from llava_demo.backends import (
    BackendError,
    BackendUnavailable,
    BadRequestError,
    CancelToken,
    ChatBackend,
    GenerationTimeout,
    SamplingParams,
    StreamEvent,
    Usage,
    make_backend,
)
from llava_demo.backends.openai_compat import OpenAICompatBackend, OpenAICompatConfig, normalise_base_url
from llava_demo.backends.sse import iter_sse_data, parse_chunk
from tests.support.fake_openai_server import FakeServer, free_port
from vision_common.chat.conversation import Conversation
from vision_common.images.load import to_data_url


@pytest.fixture
def server(tmp_path):
    fake = FakeServer(tmp_path).start()
    yield fake
    fake.kill()


def client(url: str, **overrides) -> OpenAICompatBackend:
    return OpenAICompatBackend("default", OpenAICompatConfig.tiny(url, **overrides))


def png_image(color: str, size=(12, 8)) -> Image.Image:
    return Image.new("RGB", size, color)


# -- pure parsing --------------------------------------------------------------------------------------------


def test_iter_sse_data_joins_lines_skips_comments_and_flushes_at_end():
    lines = [": keep-alive", "event: message", 'data: {"a":', "data: 1}", "", "id: 3", "data:[DONE]"]
    assert list(iter_sse_data(lines)) == ['{"a":\n1}', "[DONE]"]


def test_parse_chunk_role_delta_finish_usage_and_error():
    role = parse_chunk('{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}', source="s")
    assert (role.text, role.finish_reason, role.usage) == ("", None, None)
    delta = parse_chunk('{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}', source="s")
    assert delta.text == "Hi"
    finish = parse_chunk(
        '{"choices":[{"delta":{},"finish_reason":"length","matched_stop":null}]}', source="s"
    )
    assert finish.finish_reason == "length"
    usage = parse_chunk(
        '{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,'
        '"prompt_tokens_details":{"image_tokens":5}}}',
        source="s",
    )
    assert usage.usage == Usage(9, 3, 5)
    with pytest.raises(BackendError, match="s reported an error mid-stream: boom"):
        parse_chunk('{"error":{"object":"error","message":"boom","code":400}}', source="s")
    with pytest.raises(BackendError, match="not JSON"):
        parse_chunk("{oops", source="s")


def test_normalise_base_url():
    assert normalise_base_url("http://h:1") == "http://h:1/v1"
    assert normalise_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalise_base_url("https://api.example.com/v1") == "https://api.example.com/v1"
    with pytest.raises(ValueError, match="http\\(s\\) URL"):
        normalise_base_url("ftp://h/v1")


# -- against the fake server ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_stream_yields_deltas_then_done_with_usage_and_sends_openai_request(server):
    backend = make_backend("openai", "default", base_url=server.url)
    assert isinstance(backend, ChatBackend) and (backend.name, backend.model_id) == ("openai", "default")
    conversation = (
        Conversation()
        .with_system("Be brief.")
        .with_user("first", images=[png_image("red")])
        .with_assistant("a red box")
        .with_user("second", images=[png_image("blue"), png_image("green")])
    )
    events = list(
        backend.stream(conversation, SamplingParams(temperature=0.5, top_p=0.9, max_new_tokens=33, seed=4))
    )
    assert [e.kind for e in events] == ["delta"] * 4 + ["done"]
    assert "".join(e.text for e in events) == "Hello, world [model=default images=3 max_tokens=33]"
    assert events[-1] == StreamEvent.done("stop", Usage(17, 4, 0))
    (record,) = server.requests()
    body = record["request"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (33, 0.5, 0.9, 4)
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][2] == {"role": "assistant", "content": "a red box"}
    parts = body["messages"][3]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert "modalities" not in parts[0]  # OpenAI does not know the SGLang field
    raw = base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])
    assert Image.open(io.BytesIO(raw)).getpixel((0, 0)) == (0, 0, 255)
    assert record["auth"] is None
    backend.close()


@pytest.mark.slow
def test_complete_equals_joined_stream_and_data_urls_pass_through(server):
    backend = client(server.url, multi_image_modalities=True)
    url = to_data_url(png_image("purple"))
    conversation = Conversation().with_user("look", images=[url, png_image("red")])
    streamed = "".join(e.text for e in backend.stream(conversation) if e.kind == "delta")
    assert backend.complete(conversation).text == streamed
    parts = server.requests()[0]["request"]["messages"][0]["content"]
    assert parts[0]["image_url"]["url"] == url
    assert parts[0]["modalities"] == parts[1]["modalities"] == "multi-images"


@pytest.mark.slow
def test_mid_stream_error_chunk_raises_with_the_servers_message(server):
    events = []
    with pytest.raises(BackendError, match="reported an error mid-stream: out of KV cache") as info:
        for event in client(server.url).stream(Conversation().with_user("error")):
            events.append(event)
    assert [e.text for e in events] == ["partial"]
    assert not isinstance(info.value, BackendUnavailable)


@pytest.mark.slow
def test_http_400_is_a_bad_request_with_the_servers_message(server):
    with pytest.raises(BadRequestError, match="HTTP 400: max_tokens is too large"):
        list(client(server.url).stream(Conversation().with_user("bad")))


@pytest.mark.slow
def test_api_key_is_sent_as_bearer_and_a_wrong_key_is_reported(tmp_path):
    fake = FakeServer(tmp_path, "--api-key", "sesame").start()
    try:
        with pytest.raises(BackendError, match="HTTP 401.*check the API key"):
            client(fake.url).complete(Conversation().with_user("hi"))
        assert (
            client(fake.url, api_key="sesame")
            .complete(Conversation().with_user("hi"))
            .text.startswith("Hello")
        )
        assert [r["auth"] for r in fake.requests()] == [None, "Bearer sesame"]
    finally:
        fake.kill()


@pytest.mark.slow
def test_server_killed_mid_stream_then_refused_then_restart_works(server):
    backend = client(server.url)
    events = backend.stream(Conversation().with_user("slow"))
    assert next(events).text == "."
    server.kill()
    with pytest.raises(BackendUnavailable, match="closed the connection before the answer was complete"):
        list(events)
    with pytest.raises(BackendUnavailable, match="cannot connect to the server at .*is it running"):
        backend.complete(Conversation().with_user("hi"))
    assert backend.health()["status"] == "unreachable"
    server.start()  # same port, same client object: no poisoned state
    assert backend.complete(Conversation().with_user("hi")).text.startswith("Hello, world")
    assert backend.health()["status"] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["silent", "slow"])
def test_cancel_ends_the_stream_within_a_second(server, mode):
    backend = client(server.url, read_timeout_s=30.0)
    cancel = CancelToken()
    cancelled_at: list[float] = []

    def fire() -> None:
        cancelled_at.append(time.monotonic())
        cancel.cancel()

    events = backend.stream(Conversation().with_user(mode), cancel=cancel)
    timer = threading.Timer(0.5, fire)
    timer.start()
    collected = list(events)
    finished = time.monotonic()
    timer.join()
    assert collected[-1].kind == "done" and collected[-1].finish_reason == "cancelled"
    # The blocked read is interrupted (socket shutdown), not left to the 30 s read timeout.
    assert finished - cancelled_at[0] < 1.0
    assert backend.complete(Conversation().with_user("hi")).finish_reason == "stop"


@pytest.mark.slow
def test_cancelled_before_start_sends_nothing(server):
    cancel = CancelToken()
    cancel.cancel()
    assert list(client(server.url).stream(Conversation().with_user("hi"), cancel=cancel)) == [
        StreamEvent.done("cancelled")
    ]
    assert server.requests() == []


@pytest.mark.slow
def test_silent_server_hits_the_read_timeout(server):
    started = time.monotonic()
    with pytest.raises(GenerationTimeout, match="sent nothing for 0.5 s"):
        list(client(server.url, read_timeout_s=0.5).stream(Conversation().with_user("silent")))
    assert time.monotonic() - started < 3


@pytest.mark.slow
def test_bad_image_is_rejected_before_any_request(server):
    with pytest.raises(BadRequestError, match="image 2 of 2"):
        client(server.url).stream(Conversation().with_user("x", images=[png_image("red"), b"not an image"]))
    assert server.requests() == []


def test_unreachable_server_is_backend_unavailable():
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = client(url)
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        backend.complete(Conversation().with_user("hi"))
    assert backend.health()["status"] == "unreachable"
    backend.close()
    with pytest.raises(BackendUnavailable, match="is closed"):
        backend.stream(Conversation().with_user("hi"))
