"""Acceptance: the official ``openai`` client and the project's OpenAI-compatible backend client talk to our
server, which runs the real local backend on a tiny random LLaVA-NeXT (built in-process, CPU, offline).

Greedy answers through the server must equal the in-process backend's answers for the same conversation:
the server adds transport, never changes the prompt, the images or the sampling.
"""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from llava_demo.backends import SamplingParams, collect, make_backend
from llava_demo.backends.local import LocalBackend, LocalBackendConfig
from llava_demo.server.app import create_app
from llava_demo.server.config import ServerConfig
from llava_demo.server.thread import BackgroundServer
from vision_common.chat.conversation import Conversation, Message
from vision_common.images.load import ImageLimits

pytestmark = pytest.mark.slow  # spawns processes or serves HTTP

CONTEXT = 512
GREEDY = {"temperature": 0, "max_tokens": 6}


def encode(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def ask(text: str, *urls: str) -> list[dict]:
    return [{"role": "user", "content": [*(image_part(u) for u in urls), {"type": "text", "text": text}]}]


def pattern(size: tuple[int, int]) -> Image.Image:
    """A deterministic non-flat image, so different images give different answers."""
    image = Image.new("RGB", size)
    image.putdata(
        [
            ((x * 37) % 256, (y * 91) % 256, ((x + y) * 13) % 256)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    return image


@pytest.fixture(scope="module")
def local_backend(tiny_llava_dir: Path) -> Iterator[LocalBackend]:
    folder = tiny_llava_dir
    config = LocalBackendConfig.tiny(context_length=CONTEXT, image_limits=ImageLimits())
    with LocalBackend.load(str(folder), config) as backend:
        yield backend


@pytest.fixture(scope="module")
def server(local_backend: LocalBackend) -> Iterator[BackgroundServer]:
    config = ServerConfig.tiny(max_queue=8, max_pixels=4_000_000)
    with BackgroundServer(create_app(local_backend, config)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def in_process(backend: LocalBackend, conversation: Conversation, max_tokens: int = 6) -> str:
    return backend.complete(conversation, SamplingParams(temperature=0.0, max_new_tokens=max_tokens)).text


def test_non_stream_one_image_matches_in_process(client: openai.OpenAI, local_backend: LocalBackend) -> None:
    image = pattern((32, 32))
    completion = client.chat.completions.create(
        model="default", messages=ask("What is in the picture?", data_url(encode(image))), **GREEDY
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    expected = in_process(
        local_backend, Conversation((Message("user", "What is in the picture?", (image,)),))
    )
    assert choice.message.content == expected
    # 32x32 with the tiny AnyRes config expands to 36 image tokens (tests/support/tiny_llava.py).
    assert completion.usage.prompt_tokens_details.image_tokens == 36
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert 1 <= completion.usage.completion_tokens <= 6


def test_stream_one_image_equals_non_stream(client: openai.OpenAI) -> None:
    messages = ask("Describe it.", data_url(encode(pattern((100, 50)))))
    whole = client.chat.completions.create(model="default", messages=messages, **GREEDY)
    chunks = list(
        client.chat.completions.create(
            model="default", messages=messages, stream=True, stream_options={"include_usage": True}, **GREEDY
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens_details.image_tokens == 52  # 100x50 -> 52


def test_two_images_and_multi_turn(client: openai.OpenAI, local_backend: LocalBackend) -> None:
    first, second = pattern((32, 32)), pattern((100, 50))
    two = client.chat.completions.create(
        model="default",
        messages=ask("Compare them.", data_url(encode(first)), data_url(encode(second))),
        **GREEDY,
    )
    assert two.usage.prompt_tokens_details.image_tokens == 36 + 52
    expected = in_process(local_backend, Conversation((Message("user", "Compare them.", (first, second)),)))
    assert two.choices[0].message.content == expected

    history = [
        {"role": "system", "content": "Answer briefly."},
        *ask("What shape is it?", data_url(encode(first))),
        {"role": "assistant", "content": "a circle"},
        {"role": "user", "content": "And its colour?"},
    ]
    turn = client.chat.completions.create(model="default", messages=history, **GREEDY)
    conversation = Conversation(
        (
            Message("system", "Answer briefly."),
            Message("user", "What shape is it?", (first,)),
            Message("assistant", "a circle"),
            Message("user", "And its colour?"),
        )
    )
    assert turn.choices[0].message.content == in_process(local_backend, conversation)
    assert turn.usage.prompt_tokens_details.image_tokens == 36


def test_openai_compat_backend_client_against_our_server(
    server: BackgroundServer, local_backend: LocalBackend
) -> None:
    image = pattern((32, 32))
    conversation = Conversation((Message("user", "What is in the picture?", (image,)),))
    with make_backend("openai", "default", base_url=server.url) as remote:
        events = list(remote.stream(conversation, SamplingParams(temperature=0.0, max_new_tokens=6)))
        assert remote.health()["served_models"] == ["synthworld-llava-next"]
    completion = collect(events)
    assert completion.text == in_process(local_backend, conversation)
    assert completion.usage is not None and completion.usage.completion_tokens >= 1


def _gif(frames: int) -> bytes:
    images = [Image.new("RGB", (16, 16), (60 * i, 0, 0)) for i in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=40, loop=0)


GOOD_ODD_IMAGES = {
    "1x1": (encode(Image.new("RGB", (1, 1), (9, 9, 9))), None),
    "20000x100": (encode(Image.new("RGB", (20000, 100), (200, 10, 10))), None),
    "cmyk": (
        encode(Image.new("CMYK", (20, 20), (0, 50, 100, 0)), "JPEG"),
        "converted CMYK to RGB",
        "image/jpeg",
    ),
    "palette": (encode(Image.new("P", (20, 20), 3)), None),
    "16-bit": (encode(Image.new("I;16", (20, 20), 40000)), "16-bit image reduced to 8 bits"),
    "alpha": (
        encode(Image.new("RGBA", (20, 20), (255, 0, 0, 100))),
        "transparent pixels composited on white",
    ),
    "animated-gif": (_gif(3), "animated GIF: using the first of 3 frames", "image/gif"),
}


@pytest.mark.parametrize("name", sorted(GOOD_ODD_IMAGES))
def test_odd_but_valid_images_work_and_notices_are_surfaced(client: openai.OpenAI, name: str) -> None:
    data, notice, *mime = GOOD_ODD_IMAGES[name]
    url = data_url(data, *mime)
    completion = client.chat.completions.create(model="default", messages=ask("What is this?", url), **GREEDY)
    assert completion.choices[0].message.content is not None
    notices = (completion.model_extra or {}).get("notices", [])
    if notice is None:
        assert notices == []
    else:
        assert notices == [f"messages[0].content[0]: {notice}"]
        streamed = client.chat.completions.create(
            model="default", messages=ask("What is this?", url), stream=True, **GREEDY
        )
        seen = [n for chunk in streamed for n in (chunk.model_extra or {}).get("notices", [])]
        assert seen == notices


def _bomb_png() -> bytes:
    # A real 5000x1000 PNG of one colour: ~20 KB on disk, 5 MP decoded, over the server's 4 MP limit.
    return encode(Image.new("L", (5000, 1000)))


PNG = encode(pattern((24, 24)))
BAD_INPUTS = {
    "corrupt": (ask("q", data_url(PNG[:40] + b"\x00" * 200 + PNG[240:])), 400, "not_an_image"),
    "truncated": (ask("q", data_url(PNG[: len(PNG) // 2])), 400, "truncated"),
    "zero-byte": (ask("q", "data:image/png;base64,"), 400, "empty_file"),
    "non-image": (
        ask("q", data_url(b"GIF? no, just some text pretending", "image/gif")),
        400,
        "not_an_image",
    ),
    "bomb": (ask("q", data_url(_bomb_png())), 413, "decompression_bomb"),
    "empty-prompt": ([{"role": "user", "content": "  "}], 400, "empty_prompt"),
    "too-long": (ask("word " * (2 * CONTEXT)), 400, "context_length_exceeded"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_the_server_keeps_serving(client: openai.OpenAI, name: str) -> None:
    messages, status, code = BAD_INPUTS[name]
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="default", messages=messages, stream=stream, **GREEDY)
        assert info.value.status_code == status
        assert info.value.code == code
        assert info.value.message  # the server's sentence, e.g. "messages[0].content[0]: <upload>: ..."
    ok = client.chat.completions.create(model="default", messages=ask("still there?"), **GREEDY)
    assert ok.choices[0].message.content is not None


def test_unknown_template_and_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="valid names: .*vicuna_v1") as info:
        client.chat.completions.create(
            model="default", messages=ask("hi"), extra_body={"chat_template": "no_such_template"}, **GREEDY
        )
    assert info.value.code == "unknown_template"
    with pytest.raises(openai.NotFoundError, match="serves 'synthworld-llava-next'"):
        client.chat.completions.create(model="gpt-4o", messages=ask("hi"), **GREEDY)
    assert client.models.list().data[0].id == "synthworld-llava-next"


def test_too_long_prompt_message_has_the_numbers(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="default", messages=ask("word " * (2 * CONTEXT)), **GREEDY)
    assert f"context holds {CONTEXT} tokens" in info.value.message


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_backend_is_503_with_the_cause() -> None:
    port = _dead_port()
    dead = make_backend("openai", "default", base_url=f"http://127.0.0.1:{port}/v1", connect_timeout_s=1.0)
    config = ServerConfig.tiny(backend="openai", model="default")
    with dead, BackgroundServer(create_app(dead, config)) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=30)
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as info:
                client.chat.completions.create(model="default", messages=ask("hi"), stream=stream, **GREEDY)
            assert info.value.status_code == 503
            assert info.value.code == "backend_unavailable"
            assert f"127.0.0.1:{port}" in info.value.message and "is it running?" in info.value.message
        health = httpx.get(running.url + "/health")
        assert health.status_code == 503 and health.json()["backend"]["status"] == "unreachable"
