"""LLM teacher against a real local HTTP server speaking OpenAI chat-completions JSON (stdlib, 127.0.0.1)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.data_engine_fixtures import write_coco_sample
from trainer.data_engine import (
    BuildConfig,
    LLMClientConfig,
    LLMEndpointError,
    LLMTeacher,
    build_instruction_data,
)
from trainer.data_engine.build import build_records, teacher_context
from trainer.data_engine.coco import load_coco
from trainer.data_engine.instructions import DETAIL_INSTRUCTIONS
from trainer.data_engine.llm_client import ChatClient, chat_completions_url
from trainer.data_engine.llm_parse import MalformedReply, parse_complex, parse_conversation, parse_detail
from trainer.data_engine.llm_prompts import SEED_EXAMPLES, SYSTEM_MESSAGES
from trainer.data_engine.symbolic import format_box, normalised_box, symbolic_context
from trainer.data_engine.teachers import ResponseType

CONVERSATION_REPLY = (
    "Question: What is the man doing?\nAnswer: He is riding a bicycle.\n"
    "**Question:** Which vehicle is on the left?\n**Answer:** A bus, on the left side.\nIt is large."
)
DETAIL_REPLY = "A man rides a bicycle along a street, with a large bus on the left and a car on the right."
COMPLEX_REPLY = (
    "Question: Why should the cyclist be careful?\nAnswer: He rides right next to a bus and a car."
)


def _completion(text: str, finish_reason: str = "stop") -> tuple[int, str]:
    body = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        ],
    }
    return 200, json.dumps(body)


class FakeChatServer:
    """Replies from a script (one (status, body) per request, in order) or, when empty, from ``respond``."""

    def __init__(self, respond: Callable[[dict], tuple[int, str]] | None = None) -> None:
        self.script: list[tuple[int, str]] = []
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.respond = respond
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append({"path": self.path, **body})
                    server.headers.append(dict(self.headers))
                    status, text = server.script.pop(0) if server.script else server.respond(body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _by_kind(body: dict) -> tuple[int, str]:
    """A deterministic 'model': the reply depends only on the request (type from the system message)."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    first_box = next(line for line in user.splitlines() if re.match(r"[a-z ]+: \[\d", line))
    if system == SYSTEM_MESSAGES[ResponseType.CONVERSATION]:
        return _completion(f"Question: What is at {first_box}?\nAnswer: Something at {first_box}.")
    if system == SYSTEM_MESSAGES[ResponseType.DETAIL]:
        return _completion(f"The image shows several objects, the first of which is {first_box} here.")
    return _completion(f"Question: Why {first_box}?\nAnswer: Because of {first_box}.")


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    with FakeChatServer(respond=_by_kind) as fake:
        yield fake


def _config(url: str, **overrides: object) -> LLMClientConfig:
    settings = {"endpoint": url, "model": "tiny-teacher", "api_key": "sk-test", "timeout_s": 5.0,
                "max_retries": 2, "backoff_s": 0.01}  # fmt: skip
    settings.update(overrides)
    return LLMClientConfig(**settings)


def test_normalised_box_string_is_exact(tmp_path: Path) -> None:
    assert format_box(normalised_box((80, 30, 30, 90), 200, 150)) == "[0.400, 0.200, 0.550, 0.800]"
    # 1/3 rounds to 3 decimals; a box overshooting the border is clamped to 1.
    assert format_box(normalised_box((0, 0, 100, 101), 300, 100)) == "[0.000, 0.000, 0.333, 1.000]"
    captions, instances, images = write_coco_sample(tmp_path)
    dataset = load_coco(captions, instances, images)
    text = symbolic_context(teacher_context(dataset.images[0], dataset, seed=0))
    assert text.splitlines()[1:3] == list(dataset.images[0].captions)
    assert "person: [0.400, 0.200, 0.550, 0.800]\n" in text
    assert "bus: [0.000, 0.133, 0.300, 0.667]" in text
    synth = write_coco_sample(tmp_path / "synth", synthworld=True)
    synth_set = load_coco(*synth)
    synth_text = symbolic_context(teacher_context(synth_set.images[0], synth_set, seed=0))
    assert "circle: [0.042, 0.042, 0.333, 0.333] (large red striped)" in synth_text
    assert 'sign: [0.729, 0.833, 0.938, 0.938] (small, text "K7")' in synth_text


@pytest.mark.slow
def test_requests_carry_system_message_seeds_context_and_key(tmp_path: Path, server: FakeChatServer) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    dataset = load_coco(captions, instances, images, limit=1)
    with LLMTeacher(_config(server.url + "/v1")) as teacher:
        records, stats = build_records(
            dataset, teacher, BuildConfig(types=("conversation", "detail", "complex"), show_progress=False)
        )
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions"] * 3
    assert all(h["Authorization"] == "Bearer sk-test" for h in server.headers)
    for request, kind in zip(server.requests, ResponseType):
        assert request["model"] == "tiny-teacher"
        messages = request["messages"]
        assert messages[0] == {"role": "system", "content": SYSTEM_MESSAGES[kind]}
        # Few-shot: every seed example replayed as a user/assistant pair before the real context.
        assert len(messages) == 2 + 2 * len(SEED_EXAMPLES[kind])
        assert messages[2]["content"] == SEED_EXAMPLES[kind][0].response
        assert "person: [0.400, 0.200, 0.550, 0.800]" in messages[-1]["content"]
    assert stats.records == {"conversation": 1, "detail": 1, "complex": 1}
    by_id = {r["id"]: r for r in records}
    assert (
        by_id["1_conversation"]["conversations"][1]["value"]
        == "Something at person: [0.400, 0.200, 0.550, 0.800]."
    )
    detail_prompt = by_id["1_detail"]["conversations"][0]["value"]
    assert detail_prompt.removeprefix("<image>\n") in DETAIL_INSTRUCTIONS


@pytest.mark.slow
def test_malformed_replies_are_counted_and_dropped_and_5xx_is_retried(
    tmp_path: Path, server: FakeChatServer
) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    server.script = [
        _completion(CONVERSATION_REPLY),  # image 1 conversation: fine (bold labels, multi-line answer)
        _completion("I'm sorry, but I cannot describe images."),  # image 1 detail: refusal -> dropped
        (500, '{"error": "overloaded"}'),  # image 1 complex: server error ...
        _completion(COMPLEX_REPLY),  # ... then success on the retry
        _completion("Question: What is here?\nQuestion: And here?\nAnswer: x"),  # image 2: bad alternation
        (200, "this is not json"),  # image 2 detail: unreadable body -> dropped
        _completion(COMPLEX_REPLY, finish_reason="length"),  # image 2 complex: truncated -> dropped
    ]
    out = tmp_path / "llm.json"
    config = BuildConfig(types=("conversation", "detail", "complex"), limit=2, show_progress=False)
    with LLMTeacher(_config(server.url)) as teacher:
        stats = build_instruction_data(captions, instances, images, out, teacher, config)
    assert len(server.requests) == 7
    assert stats.records == {"conversation": 1, "complex": 1}
    assert stats.dropped == {"detail": 2, "conversation": 1, "complex": 1}
    assert stats.drop_reasons == {
        "refusal in description": 1,
        "block 2 should be an answer but is a question": 1,
        "reply body is not JSON": 1,
        "reply was cut off at max_tokens": 1,
    }
    records = {r["id"]: r for r in json.loads(out.read_text())}
    assert set(records) == {"1_conversation", "1_complex"}
    assert [t["value"] for t in records["1_conversation"]["conversations"]] == [
        "<image>\nWhat is the man doing?",
        "He is riding a bicycle.",
        "Which vehicle is on the left?",
        "A bus, on the left side.\nIt is large.",
    ]
    assert records["1_complex"]["conversations"][1]["value"] == "He rides right next to a bus and a car."


@pytest.mark.slow
def test_client_error_is_clear_and_leaves_no_output(tmp_path: Path, server: FakeChatServer) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    server.script = [(401, '{"error": {"message": "invalid api key"}}')]
    out = tmp_path / "never.json"
    with LLMTeacher(_config(server.url)) as teacher, pytest.raises(LLMEndpointError) as info:
        build_instruction_data(
            captions, instances, images, out, teacher, BuildConfig(types=("detail",), show_progress=False)
        )
    message = str(info.value)
    assert "HTTP 401" in message and "invalid api key" in message and "/v1/chat/completions" in message
    assert len(server.requests) == 1  # a 4xx is never retried
    assert not out.exists()


def test_unreachable_endpoint_is_retried_then_reported() -> None:
    with FakeChatServer() as probe:
        url = probe.url  # a port that was just free; after shutdown nothing listens there
    sleeps: list[float] = []
    with ChatClient(_config(url, max_retries=3, backoff_s=0.5), sleep=sleeps.append) as client:
        with pytest.raises(LLMEndpointError, match=r"failed 4 time\(s\); last problem: ConnectError"):
            client.complete([{"role": "user", "content": "hi"}])
    assert sleeps == [0.5, 1.0, 2.0]  # exponential backoff


@pytest.mark.slow
def test_concurrent_workers_give_the_same_output(tmp_path: Path, server: FakeChatServer) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    dataset = load_coco(captions, instances, images)
    config = dict(types=("conversation", "detail", "complex"), show_progress=False)
    with LLMTeacher(_config(server.url)) as teacher:
        serial, _ = build_records(dataset, teacher, BuildConfig(workers=1, **config))
        parallel, stats = build_records(dataset, teacher, BuildConfig(workers=3, **config))
    assert parallel == serial
    assert stats.total_records == 9 and len(server.requests) == 18


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no 'Question:'/'Answer:' blocks"),
        ("Sure! Here you go.\nQuestion: a?\nAnswer: b", "text before the first 'Question:'"),
        ("Question: a?\nAnswer: b\nQuestion: c?", "last question has no answer"),
        ("Answer: b", "block 1 should be a question"),
        ("Question: a?\nAnswer:   ", "empty answer 1"),
        ("Question: a?\nAnswer: As an AI, I cannot see images.", "refusal in answer 1"),
        ("Question: <image> a?\nAnswer: b", "<image> tag in question 1"),
    ],
)
def test_conversation_parser_rejects_malformed_replies(text: str, reason: str) -> None:
    with pytest.raises(MalformedReply, match=reason):
        parse_conversation(text)


def test_parsers_accept_good_replies_and_reject_bad_detail_and_complex() -> None:
    turns = parse_conversation("Q1: How many?\nA1: Two.\n\nQuestion 2: Where?\nAnswer 2: Left.")
    assert [(t.question, t.answer) for t in turns] == [("How many?", "Two."), ("Where?", "Left.")]
    assert parse_detail(f"  {DETAIL_REPLY}\n") == DETAIL_REPLY
    with pytest.raises(MalformedReply, match="shorter than"):
        parse_detail("A bus.")
    with pytest.raises(MalformedReply, match="Question/Answer"):
        parse_detail("Question: what is it about this image that matters?")
    with pytest.raises(MalformedReply, match="exactly one question, got 2"):
        parse_complex("Question: a?\nAnswer: b\nQuestion: c?\nAnswer: d")
    assert parse_complex(COMPLEX_REPLY).answer == "He rides right next to a bus and a car."


def test_endpoint_forms_and_config_validation() -> None:
    expected = "http://h:1/v1/chat/completions"
    assert {chat_completions_url(u) for u in ("http://h:1", "http://h:1/", "http://h:1/v1", expected)} == {
        expected
    }
    with pytest.raises(ValueError, match="http"):
        LLMClientConfig(endpoint="h:1", model="m")
    with pytest.raises(ValueError, match="max_retries"):
        LLMClientConfig(endpoint="http://h", model="m", max_retries=-1)
    assert LLMClientConfig.tiny().max_retries == 2


@pytest.mark.slow
def test_cli_with_llm_teacher(
    tmp_path: Path, server: FakeChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainer.data_engine.cli import main

    captions, instances, images = write_coco_sample(tmp_path)
    out = tmp_path / "cli.json"
    common = ["build", "--captions", str(captions), "--instances", str(instances), "--images", str(images),
              "--out", str(out), "--types", "detail,complex", "--limit", "2"]  # fmt: skip
    assert (
        main([*common, "--teacher", "llm", "--endpoint", server.url, "--api-key", "k", "--workers", "2"]) == 0
    )
    assert "detail: 2" in capsys.readouterr().out
    assert {r["id"] for r in json.loads(out.read_text())} == {
        "1_detail",
        "1_complex",
        "2_detail",
        "2_complex",
    }
    assert {h["Authorization"] for h in server.headers} == {"Bearer k"}
    assert main([*common, "--teacher", "llm"]) == 2
    assert "--teacher llm needs --endpoint" in capsys.readouterr().err
