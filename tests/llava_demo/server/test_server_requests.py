"""Request parsing and response shapes of the OpenAI-compatible server (pure functions, no HTTP)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from llava_demo.backends.base import BackendUnavailable, ContextOverflowError, Usage
from llava_demo.server.errors import ApiError, from_backend_error, from_image_error
from llava_demo.server.requests import build_conversation, parse_chat_request, parse_json_body
from llava_demo.server.responses import ChunkWriter, completion_body, openai_finish_reason
from vision_common.images.limits import ImageInputError, ImageLimits, LoadedImage


def parse(body: dict, default_max_tokens: int = 64):
    return parse_chat_request(body, default_max_tokens=default_max_tokens)


def png_data_url(size=(8, 4), mode="RGB", fmt="PNG", **save) -> str:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt, **save)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buffer.getvalue()).decode()


def user(content) -> dict:
    return {"role": "user", "content": content}


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def api_error(body: dict) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse(body)
    return info.value


def test_sampling_fields_map_to_sampling_params() -> None:
    request = parse(
        {
            "model": "default",
            "messages": [user("hi")],
            "temperature": 0,
            "top_p": 0.5,
            "max_completion_tokens": 7,
            "stop": "END",
            "seed": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert request.model == "default"
    assert (request.params.temperature, request.params.top_p, request.params.max_new_tokens) == (0.0, 0.5, 7)
    assert request.params.stop == ("END",) and request.params.seed == 3
    assert request.stream and request.include_usage


def test_defaults_when_fields_are_absent_or_null() -> None:
    request = parse({"messages": [user("hi")], "max_tokens": None, "temperature": None, "stop": None})
    assert request.params.max_new_tokens == 64  # the server's default_max_tokens
    assert request.params.temperature == 0.2 and request.params.top_p == 0.7  # SamplingParams defaults
    assert request.params.stop == () and not request.stream and not request.include_usage


def test_content_parts_and_merging_of_consecutive_messages() -> None:
    url = png_data_url()
    request = parse(
        {
            "messages": [
                {"role": "developer", "content": "be brief"},
                user([image_part(url), {"type": "text", "text": "first"}]),
                {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
                user([{"type": "image_url", "image_url": url}]),
                user([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]),
            ]
        }
    )
    roles = [m.role for m in request.messages]
    assert roles == ["system", "user", "assistant", "user"]
    last = request.messages[-1]
    # The image-only message and the text message merged into one user turn.
    assert last.text == "a\nb" and [p.param for p in last.images] == ["messages[3].content[0]"]
    assert request.messages[1].images[0].param == "messages[1].content[0]"


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({}, "invalid_request", "'messages' is required"),
        ({"messages": []}, "invalid_request", "non-empty list"),
        ({"messages": [user("   ")]}, "empty_prompt", "last user message is empty"),
        (
            {"messages": [user("hi"), {"role": "assistant", "content": "x"}]},
            "invalid_request",
            "must come from the user",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "invalid_request",
            "messages[0].role must be one of",
        ),
        ({"messages": [{"role": "user"}]}, "invalid_request", "has no 'content'"),
        ({"messages": [user([{"type": "input_audio"}])]}, "invalid_request", "unsupported content part type"),
        ({"messages": [user([{"type": "image_url", "image_url": {}}])]}, "invalid_request", "image_url.url"),
        (
            {"messages": [{"role": "system", "content": [image_part("data:x")]}, user("q")]},
            "invalid_request",
            "only user messages may carry images",
        ),
        ({"messages": [user("hi")], "max_tokens": 0}, "invalid_request", "at least 1"),
        ({"messages": [user("hi")], "max_tokens": True}, "invalid_request", "got a boolean"),
        (
            {"messages": [user("hi")], "max_tokens": 5, "max_completion_tokens": 6},
            "invalid_request",
            "disagree",
        ),
        ({"messages": [user("hi")], "temperature": 3}, "invalid_request", "temperature must be in [0, 2.0]"),
        ({"messages": [user("hi")], "top_p": 0}, "invalid_request", "top_p must be in (0, 1]"),
        ({"messages": [user("hi")], "seed": -1}, "invalid_request", "seed"),
        ({"messages": [user("hi")], "stop": ["a", ""]}, "invalid_request", "must not be empty"),
        (
            {"messages": [user("hi")], "stream_options": {"include_usage": True}},
            "invalid_request",
            "only allowed when 'stream'",
        ),
        ({"messages": [user("hi")], "n": 2}, "unsupported_parameter", "'n' must be 1"),
        ({"messages": [user("hi")], "tools": [{"type": "function"}]}, "unsupported_parameter", "'tools'"),
        ({"messages": [user("hi")], "logprobs": True}, "unsupported_parameter", "logprobs"),
    ],
)
def test_bad_requests_are_400_with_code_and_field(body: dict, code: str, fragment: str) -> None:
    error = api_error(body)
    assert error.status == 400
    assert error.code == code
    assert fragment in error.message


def test_parse_json_body_errors() -> None:
    assert parse_json_body(b'{"a": 1}') == {"a": 1}
    for raw, fragment in [(b"", "empty"), (b"{bad", "line 1, column 2"), (b"\xff\xfe", "not")]:
        with pytest.raises(ApiError, match=fragment) as info:
            parse_json_body(raw)
        assert info.value.code == "invalid_json" and info.value.status == 400
    with pytest.raises(ApiError, match="must be a JSON object"):
        parse(["not", "an", "object"])  # type: ignore[arg-type]


def test_build_conversation_decodes_images_and_names_notices() -> None:
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    gif = "data:image/gif;base64," + base64.b64encode(buffer.getvalue()).decode()
    request = parse(
        {"messages": [user([image_part(png_data_url()), image_part(gif), {"type": "text", "text": "q"}])]}
    )
    conversation, notices = build_conversation(request, ImageLimits.for_untrusted_requests())
    images = conversation.images
    assert [type(i) for i in images] == [LoadedImage, LoadedImage]
    assert images[0].image.size == (8, 4)
    assert notices == ("messages[0].content[1]: animated GIF: using the first of 3 frames",)
    # Notices are reported once, by the server: the backend gets images without them.
    assert all(i.notices == () for i in images)


@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("data:image/png;base64,", 400, "empty_file"),
        ("data:image/png;base64," + base64.b64encode(b"not an image at all").decode(), 400, "not_an_image"),
        ("/etc/passwd", 400, "local_disabled"),
        ("https://example.com/cat.png", 400, "remote_disabled"),
    ],
)
def test_image_errors_keep_the_loader_code(url: str, status: int, code: str) -> None:
    request = parse({"messages": [user([{"type": "text", "text": "q"}, image_part(url)])]})
    with pytest.raises(ApiError) as info:
        build_conversation(request, ImageLimits.for_untrusted_requests())
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.param == "messages[0].content[1]"
    assert info.value.message.startswith("messages[0].content[1]: ")


def test_error_mappings() -> None:
    bomb = from_image_error(ImageInputError("decompression_bomb", "too many pixels", source="x"), "p")
    assert (bomb.status, bomb.code, bomb.error_type) == (413, "decompression_bomb", "invalid_request_error")
    overflow = from_backend_error(
        ContextOverflowError("too long", prompt_tokens=9, max_new_tokens=1, context_length=8)
    )
    assert (overflow.status, overflow.code) == (400, "context_length_exceeded")
    down = from_backend_error(BackendUnavailable("cannot connect to http://127.0.0.1:9"))
    assert (down.status, down.code, down.error_type) == (
        503,
        "backend_unavailable",
        "service_unavailable_error",
    )
    assert down.body() == {
        "error": {
            "message": "cannot connect to http://127.0.0.1:9",
            "type": "service_unavailable_error",
            "code": "backend_unavailable",
            "param": None,
        }
    }
    assert down.stream_body()["error"]["object"] == "error"


def test_completion_body_and_chunk_sequence() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=2, image_tokens=4)
    body = completion_body(
        completion_id="chatcmpl-1", created=5, model="m", text="hi", finish_reason="length", usage=usage
    )
    assert body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "hi"},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert body["usage"]["total_tokens"] == 12 and body["usage"]["prompt_tokens_details"]["image_tokens"] == 4
    assert "notices" not in body
    writer = ChunkWriter("m", include_usage=True, completion_id="chatcmpl-1", created=5)
    writer.add_notice("n")
    chunks = [writer.role(), writer.content("a"), writer.finish("cancelled"), writer.usage(usage)]
    decoded = [json.loads(c.removeprefix(b"data: ").decode()) for c in chunks]
    assert all(c.endswith(b"\n\n") for c in chunks)
    assert decoded[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert decoded[0]["notices"] == ["n"] and "notices" not in decoded[1]
    assert decoded[1]["choices"][0]["delta"] == {"content": "a"} and decoded[1]["usage"] is None
    assert decoded[2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "abort"}
    assert decoded[3]["choices"] == [] and decoded[3]["usage"]["completion_tokens"] == 2
    assert {d["id"] for d in decoded} == {"chatcmpl-1"}
    assert openai_finish_reason(None) == "stop"
