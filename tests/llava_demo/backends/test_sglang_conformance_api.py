"""SGLang conformance, API side, against SGLang's own protocol models (``sglang.srt.entrypoints.openai.
protocol``) in one subprocess run (sglang_probe.py):

- the requests our ``openai`` and ``sglang`` backends and the data engine's ``ChatClient`` put on the wire
  validate as ``ChatCompletionRequest``, with no field SGLang would silently ignore and the values we meant;
- streams and bodies built from SGLang's models exactly as ``serving_chat`` writes them (role chunk, deltas,
  finish chunk with ``stop`` / ``length`` / ``abort``, usage chunk, ``[DONE]``; non-stream body; error body
  and mid-stream error) parse correctly in our clients, replayed over real HTTP;
- our own server's non-stream bodies and stream chunks validate as SGLang's response models, so one client
  serves both. Error bodies match SGLang's ``ErrorResponse`` except ``code``: ours is OpenAI's string
  (``invalid_request``), SGLang's the HTTP status; our clients read the message from either.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image

from llava_demo.backends import BackendError, BadRequestError, SamplingParams, Usage, collect
from llava_demo.backends.openai_compat import OpenAICompatBackend, OpenAICompatConfig
from llava_demo.backends.sglang import SGLangBackend, SGLangBackendConfig
from llava_demo.server.app import create_app
from llava_demo.server.config import ServerConfig
from llava_demo.server.responses import ChunkWriter, completion_body
from llava_demo.server.thread import BackgroundServer
from tests.support.server_fakes import FakeBackend
from tests.support.sglang_conformance import Reply, replay_server, run_probe, sglang_env_or_skip, sse_payloads
from trainer.data_engine.llm_client import ChatClient, LLMClientConfig, LLMEndpointError
from vision_common.chat.conversation import Conversation

FINISHED = (
    b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)
COMPLETION_JSON = (
    b'{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}'
)


def red(size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, (200, 30, 60))


CONVERSATIONS: dict[str, tuple[Conversation, SamplingParams]] = {
    "text": (Conversation().with_user("Hello"), SamplingParams.tiny()),
    "one image": (Conversation().with_user("What is this?", images=[red()]), SamplingParams()),
    "two images, system, stop, seed": (
        Conversation().with_system("Be brief.").with_user("Compare them.", images=[red(), red((30, 40))]),
        SamplingParams(temperature=0.7, top_p=0.9, max_new_tokens=64, stop=("###", "\n\n"), seed=7),
    ),
    "two turns": (
        Conversation()
        .with_user("What is this?", images=[red()])
        .with_assistant("A red box.")
        .with_user("Why?"),
        SamplingParams(temperature=0),
    ),
}
# SGLang-side answers: texts, finish_reason and usage, built with SGLang's models in the probe.
COMPLETIONS = [
    {"texts": ["A red", " box", "."], "finish_reason": "stop", "matched_stop": "</s>"},
    {"texts": ["A red", " box"], "finish_reason": "length"},
    {"texts": ["A"], "finish_reason": "abort"},
]
for number, spec in enumerate(COMPLETIONS):
    spec.update(
        model="default", usage={"prompt": 2200 + number, "completion": len(spec["texts"]), "image": 2144}
    )
OUR_FINISH = {"stop": "stop", "length": "length", "abort": "cancelled"}
ERRORS = [
    {
        "message": "The input (5000 tokens) is longer than the model's context length (4096 tokens).",
        "type": "BadRequestError",
        "code": 400,
    },
]


def backend_requests() -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, case, body) for what each of our clients sends, captured by a real HTTP server."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for kind in ("openai", "sglang"):
        with replay_server([Reply(200, FINISHED) for _ in CONVERSATIONS]) as (url, state):
            if kind == "openai":
                backend: Any = OpenAICompatBackend(
                    "default", OpenAICompatConfig(url, extra_body={"regex": "[a-z]+"})
                )
            else:
                backend = SGLangBackend.start("llava-v1.6-vicuna-7b", SGLangBackendConfig(url=url))
            with backend:
                for conversation, params in CONVERSATIONS.values():
                    assert collect(backend.stream(conversation, params)).text == "ok"
        out += [(kind, case, body) for case, body in zip(CONVERSATIONS, state.requests)]
    with replay_server([Reply(200, COMPLETION_JSON, "application/json")]) as (url, state):
        with ChatClient(LLMClientConfig.tiny(url)) as client:
            assert (
                client.complete([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]).text
                == "ok"
            )
    out.append(("data_engine", "text", state.requests[0]))
    return out


def our_server_responses() -> dict[str, list[Any]]:
    """Non-stream bodies, stream chunks and error bodies from our own server (scripted backend)."""
    image_message = {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _png_base64()}},
            {"type": "text", "text": "What is this?"},
        ],
    }
    body = {"messages": [image_message], "max_tokens": 3}
    completions, chunks, errors = [], [], []
    with (
        BackgroundServer(create_app(FakeBackend(), ServerConfig.tiny())) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        completions.append(client.post("/v1/chat/completions", json=body).json())
        for options in ({}, {"stream_options": {"include_usage": True}}):
            with client.stream("POST", "/v1/chat/completions", json={**body, **options, "stream": True}) as r:
                payloads = sse_payloads(list(r.iter_lines()))
            assert payloads[-1] == "[DONE]"
            chunks += payloads[:-1]
        bad = client.post("/v1/chat/completions", json={"messages": []})
        assert bad.status_code == 400
        errors.append(bad.json()["error"])
    failing = FakeBackend(fail_after=(1, BackendError("boom")))
    with (
        BackgroundServer(create_app(failing, ServerConfig.tiny())) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
            payloads = sse_payloads(list(r.iter_lines()))
        errors.append(next(p for p in payloads if isinstance(p, dict) and "error" in p)["error"])
    # Our "cancelled" is written as SGLang's "abort": check the writer's own output for it too.
    completions.append(
        completion_body(
            completion_id="c",
            created=1,
            model="m",
            text="A",
            finish_reason="cancelled",
            usage=Usage(10, 1, 4),
        )
    )
    chunks.append(json.loads(ChunkWriter("m").finish("cancelled").removeprefix(b"data: ")))
    return {"completions": completions, "chunks": chunks, "errors": errors}


def _png_base64() -> str:
    buffer = io.BytesIO()
    red().save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    env = sglang_env_or_skip()
    requests = backend_requests()
    ours = our_server_responses()
    results = run_probe(
        env,
        {
            "validate_requests": [body for _, _, body in requests],
            "build_responses": {"completions": COMPLETIONS, "errors": ERRORS},
            "validate_responses": ours,
        },
    )
    return {"results": results, "requests": requests, "ours": ours}


@pytest.mark.slow
def test_our_requests_validate_as_sglang_chat_completion_requests(probe: dict[str, Any]) -> None:
    checked = probe["results"]["validate_requests"]
    assert len(checked) == len(probe["requests"]) == 2 * len(CONVERSATIONS) + 1
    for (kind, case, _body), result in zip(probe["requests"], checked):
        where = f"{kind}/{case}"
        assert "error" not in result, f"{where}: SGLang rejects our request: {result.get('error')}"
        assert result["ignored"] == [], f"{where}: SGLang ignores {result['ignored']}"
        values = result["values"]
        assert values["model"] == "default", where
        if kind == "data_engine":
            assert values["roles"] == ["system", "user"] and values["max_tokens"] == 1024
            continue
        conversation, params = CONVERSATIONS[case]
        assert values["stream"] is True and values["include_usage"] is True, where
        assert values["max_tokens"] == params.max_new_tokens, where
        assert values["temperature"] == params.temperature and values["top_p"] == params.top_p, where
        assert values["stop"] == (list(params.stop) or None) and values["seed"] == params.seed, where
        assert values["roles"] == [m.role for m in conversation.messages], where
        images = len(conversation.images)
        image_parts = [p for p in values["parts"] if p["type"] == "image_url"]
        assert len(image_parts) == images, where
        assert all(p["url_prefix"] == "data:image/png;base64," for p in image_parts), where
        # SGLang's LLaVA needs "multi-images" on every part of a several-image request; the plain
        # OpenAI kind does not send the field, which SGLang reads as its default "image".
        several = kind == "sglang" and images > 1
        assert [p["modalities"] for p in image_parts] == ["multi-images" if several else "image"] * images


def replay_into(kind: str, reply: Reply) -> Any:
    conversation, params = CONVERSATIONS["one image"]
    with replay_server([reply]) as (url, _):
        if kind == "openai":
            backend: Any = OpenAICompatBackend("default", OpenAICompatConfig(url))
        else:
            backend = SGLangBackend.start("llava-v1.6-vicuna-7b", SGLangBackendConfig(url=url))
        with backend:
            return collect(backend.stream(conversation, params))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["openai", "sglang"])
def test_sglang_streams_parse_in_our_client(probe: dict[str, Any], kind: str) -> None:
    built = probe["results"]["build_responses"]["completions"]
    assert len(built) == len(COMPLETIONS)
    for spec, sglang in zip(COMPLETIONS, built):
        payloads = sse_payloads("".join(sglang["sse"]).splitlines())
        # The shape serving_chat writes: role chunk, deltas, finish chunk, usage chunk with no choices.
        assert payloads[0]["choices"][0]["delta"] == {
            "role": "assistant",
            "content": "",
            "reasoning_content": None,
        }
        assert payloads[-2]["choices"] == [] and payloads[-1] == "[DONE]"
        completion = replay_into(kind, Reply(200, "".join(sglang["sse"]).encode()))
        assert completion.text == "".join(spec["texts"])
        assert completion.finish_reason == OUR_FINISH[spec["finish_reason"]]
        usage = spec["usage"]
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
            usage["prompt"],
            usage["completion"],
        )
        assert completion.usage.image_tokens == usage["image"]


@pytest.mark.slow
def test_sglang_non_stream_body_parses_in_the_data_engine_client(probe: dict[str, Any]) -> None:
    for spec, sglang in zip(COMPLETIONS, probe["results"]["build_responses"]["completions"]):
        body = json.dumps(sglang["body"]).encode()
        with replay_server([Reply(200, body, "application/json")]) as (url, _):
            with ChatClient(LLMClientConfig.tiny(url)) as client:
                reply = client.complete([{"role": "user", "content": "q"}])
        assert (reply.text, reply.finish_reason, reply.error) == (
            "".join(spec["texts"]),
            spec["finish_reason"],
            None,
        )


@pytest.mark.slow
def test_sglang_errors_surface_with_sglangs_message(probe: dict[str, Any]) -> None:
    (error,) = probe["results"]["build_responses"]["errors"]
    message = ERRORS[0]["message"]
    assert error["body"] == {
        "object": "error",
        "message": message,
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    for kind in ("openai", "sglang"):
        with pytest.raises(BadRequestError, match="longer than the model's context length"):
            replay_into(kind, Reply(400, json.dumps(error["body"]).encode(), "application/json"))
        mid_stream = b'data: {"choices":[{"index":0,"delta":{"content":"A"}}]}\n\n' + error["sse"].encode()
        with pytest.raises(BackendError, match="mid-stream: The input .5000 tokens. is longer") as raised:
            replay_into(kind, Reply(200, mid_stream + b"data: [DONE]\n\n"))
        assert type(raised.value) is BackendError
    with replay_server([Reply(400, json.dumps(error["body"]).encode(), "application/json")]) as (url, _):
        with (
            ChatClient(LLMClientConfig.tiny(url)) as client,
            pytest.raises(LLMEndpointError, match="HTTP 400"),
        ):
            client.complete([{"role": "user", "content": "q"}])


@pytest.mark.slow
def test_our_server_responses_validate_as_sglang_responses(probe: dict[str, Any]) -> None:
    checked = probe["results"]["validate_responses"]
    ours = probe["ours"]
    assert len(checked["completions"]) == len(ours["completions"]) == 2
    assert checked["completions"] == [{}, {}]
    chunks = ours["chunks"]
    assert checked["chunks"] == [{}] * len(chunks)
    # Both streams: the role chunk, content, the finish chunk; then the usage chunk and the writer's "abort".
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas.count({"role": "assistant", "content": ""}) == 2
    assert "".join(d.get("content", "") for d in deltas) == "Hello, world" * 2
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f is not None] == ["length", "length", "abort"]
    assert [c["usage"]["prompt_tokens_details"]["image_tokens"] for c in chunks if not c["choices"]] == [3]
    # Error bodies: SGLang's ErrorResponse fields, except that our code is OpenAI's string.
    assert [e["code"] for e in ours["errors"]] == ["invalid_request", "backend_error"]
    assert [[line.split(":")[0] for line in e["error"]] for e in checked["errors"]] == [["code"], ["code"]]
    assert all("integer" in e["error"][0] for e in checked["errors"])
