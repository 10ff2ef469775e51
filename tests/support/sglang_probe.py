"""Runs SGLang's own code on inputs the conformance tests send, in a subprocess (so sglang never enters the test
process): ``python tests/support/sglang_probe.py <sglang folder>`` reads one JSON object of operations on stdin and
writes one JSON object of results on stdout.

The folder (tests/support/sglang_env.py) is appended to the END of ``sys.path``: the venv's torch, transformers and
pydantic win, and the folder only supplies sglang and the small packages the venv lacks. Every operation
answers with data (parsed values, rendered prompts, serialised bodies, validation errors); the assertions
live in the tests.

Operations (each key optional):
- ``parse_argv``: ``{"argvs": {name: [args after -m sglang.launch_server]}, "fields": [...]}`` -> per name
  ``{"values": {field: value}}`` from ``prepare_server_args`` (what ``sglang.launch_server`` runs), or
  ``{"error": argparse's message}``.
- ``templates``: ``{"names": [...]}`` -> the registry's names and ``chat_template_exists`` per name.
- ``render``: ``[{"template", "body"}]`` -> the prompt ``generate_chat_conv`` builds for a chat request, its
  image count, modalities, image token and stop strings, or ``{"error"}``.
- ``validate_requests``: ``[body]`` -> per body the ``ChatCompletionRequest`` values we care about and the
  fields SGLang silently ignores (``ignored``), or ``{"error"}``.
- ``build_responses``: ``[{"texts", "finish_reason", "usage", "model"}]`` -> per spec the SSE lines exactly
  as ``serving_chat`` writes them (role chunk, deltas, finish chunk, usage chunk, ``[DONE]``) and the
  non-stream body; plus ``errors``: ``[{"message", "type", "code"}]`` -> the non-stream error body and the
  mid-stream ``data:`` line SGLang sends.
- ``validate_responses``: ``{"completions": [...], "chunks": [...], "errors": [...]}`` -> per object ``{}``
  or ``{"error"}`` from ``ChatCompletionResponse`` / ``ChatCompletionStreamResponse`` / ``ErrorResponse``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import sys
from typing import Any


def _json_value(value: Any) -> Any:
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


# sglang is imported inside each operation: it is importable only after main() appends the folder to sys.path.
def parse_argv(op: dict[str, Any]) -> dict[str, Any]:
    from sglang.srt.server_args import prepare_server_args

    out: dict[str, Any] = {}
    for name, argv in op["argvs"].items():
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                args = prepare_server_args(list(argv))
        except SystemExit:
            out[name] = {"error": stderr.getvalue().strip().splitlines()[-1:] or ["argparse exited"]}
            continue
        out[name] = {"values": {field: _json_value(getattr(args, field)) for field in op["fields"]}}
    return out


def templates(op: dict[str, Any]) -> dict[str, Any]:
    from sglang.srt.parser.conversation import chat_template_exists, chat_templates

    return {
        "registry": sorted(chat_templates),
        "exists": {name: chat_template_exists(name) for name in op["names"]},
    }


def render(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from sglang.srt.entrypoints.openai.protocol import ChatCompletionRequest
    from sglang.srt.parser.conversation import generate_chat_conv

    out = []
    for item in items:
        try:
            request = ChatCompletionRequest.model_validate(item["body"])
            conv = generate_chat_conv(request, item["template"])
        except Exception as exc:  # reported back, judged by the test
            out.append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        out.append(
            {
                "prompt": conv.get_prompt(),
                "images": len(conv.image_data),
                "modalities": list(conv.modalities),
                "image_token": conv.image_token,
                "stop": _json_value(conv.stop_str),
            }
        )
    return out


def _ignored_fields(model: Any, raw: Any, where: str) -> list[str]:
    """Keys of ``raw`` that the validated pydantic ``model`` dropped (unknown fields are ignored silently)."""
    from pydantic import BaseModel

    if not isinstance(model, BaseModel) or not isinstance(raw, dict):
        return []
    known: dict[str, str] = {}
    for name, info in type(model).model_fields.items():
        known[name] = name
        if info.alias:
            known[info.alias] = name
    ignored = [f"{where}.{key}" for key in raw if key not in known]
    for key, value in raw.items():
        if key not in known:
            continue
        attr = getattr(model, known[key], None)
        if isinstance(value, list) and isinstance(attr, list):
            for i, (sub_raw, sub_model) in enumerate(zip(value, attr)):
                ignored += _ignored_fields(sub_model, sub_raw, f"{where}.{key}[{i}]")
        else:
            ignored += _ignored_fields(attr, value, f"{where}.{key}")
    return ignored


def validate_requests(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import warnings

    from sglang.srt.entrypoints.openai.protocol import ChatCompletionRequest

    out = []
    for body in bodies:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # max_tokens: deprecated, still honoured
                request = ChatCompletionRequest.model_validate(body)
                max_tokens = request.max_tokens
        except Exception as exc:
            out.append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        parts = [
            {
                "type": part.type,
                "modalities": getattr(part, "modalities", None),
                "url_prefix": part.image_url.url[:22] if part.type == "image_url" else None,
            }
            for message in request.messages
            if isinstance(message.content, list)
            for part in message.content
        ]
        out.append(
            {
                "values": {
                    "model": request.model,
                    "stream": request.stream,
                    "include_usage": bool(request.stream_options and request.stream_options.include_usage),
                    "max_tokens": max_tokens,
                    "temperature": request.temperature,
                    "top_p": request.top_p,
                    "stop": request.stop,
                    "seed": request.seed,
                    "roles": [message.role for message in request.messages],
                    "parts": parts,
                },
                "ignored": _ignored_fields(request, body, "request"),
            }
        )
    return out


def build_responses(op: dict[str, Any]) -> dict[str, Any]:
    from sglang.srt.entrypoints.openai.protocol import (
        ChatCompletionResponse,
        ChatCompletionResponseChoice,
        ChatCompletionResponseStreamChoice,
        ChatCompletionStreamResponse,
        ChatMessage,
        DeltaMessage,
        ErrorResponse,
        PromptTokensDetails,
        UsageInfo,
    )

    completions = []
    for spec in op.get("completions", []):
        rid, model, created = "chatcmpl-conformance", spec["model"], 1_700_000_000
        prompt, completion, image = (spec["usage"][k] for k in ("prompt", "completion", "image"))
        usage = UsageInfo(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=0, image_tokens=image),
        )

        def chunk(delta: DeltaMessage, finish: str | None, **kw: Any) -> str:
            choice = ChatCompletionResponseStreamChoice(index=0, delta=delta, finish_reason=finish, **kw)
            body = ChatCompletionStreamResponse(id=rid, created=created, model=model, choices=[choice])  # noqa: B023
            return f"data: {body.model_dump_json()}\n\n"

        lines = [chunk(DeltaMessage(role="assistant", content=""), None)]
        lines += [chunk(DeltaMessage(content=text), None) for text in spec["texts"]]
        lines.append(chunk(DeltaMessage(), spec["finish_reason"], matched_stop=spec.get("matched_stop")))
        usage_chunk = ChatCompletionStreamResponse(
            id=rid, created=created, model=model, choices=[], usage=usage
        )
        lines += [f"data: {usage_chunk.model_dump_json()}\n\n", "data: [DONE]\n\n"]
        response = ChatCompletionResponse(
            id=rid,
            created=created,
            model=model,
            choices=[
                ChatCompletionResponseChoice(
                    index=0,
                    message=ChatMessage(role="assistant", content="".join(spec["texts"])),
                    finish_reason=spec["finish_reason"],
                    matched_stop=spec.get("matched_stop"),
                )
            ],
            usage=usage,
        )
        completions.append({"sse": lines, "body": response.model_dump(mode="json")})
    errors = []
    for spec in op.get("errors", []):
        # serving_base.create_error_response / create_streaming_error_response build exactly these.
        error = ErrorResponse(object="error", message=spec["message"], type=spec["type"], code=spec["code"])
        errors.append(
            {"body": error.model_dump(), "sse": f"data: {json.dumps({'error': error.model_dump()})}\n\n"}
        )
    return {"completions": completions, "errors": errors}


def validate_responses(op: dict[str, Any]) -> dict[str, Any]:
    from pydantic import ValidationError
    from sglang.srt.entrypoints.openai.protocol import (
        ChatCompletionResponse,
        ChatCompletionStreamResponse,
        ErrorResponse,
    )

    def check(model: Any, value: Any) -> dict[str, Any]:
        try:
            model.model_validate(value)
        except ValidationError as exc:
            return {"error": [".".join(map(str, e["loc"])) + ": " + e["msg"] for e in exc.errors()]}
        return {}

    return {
        "completions": [check(ChatCompletionResponse, v) for v in op.get("completions", [])],
        "chunks": [check(ChatCompletionStreamResponse, v) for v in op.get("chunks", [])],
        "errors": [check(ErrorResponse, v) for v in op.get("errors", [])],
    }


OPERATIONS = {
    "parse_argv": parse_argv,
    "templates": templates,
    "render": render,
    "validate_requests": validate_requests,
    "build_responses": build_responses,
    "validate_responses": validate_responses,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: sglang_probe.py <folder holding sglang>", file=sys.stderr)
        return 2
    sys.path.append(argv[0])  # last: the venv's own packages win
    ops = json.load(sys.stdin)
    unknown = sorted(set(ops) - set(OPERATIONS))
    if unknown:
        print(f"unknown operation(s) {unknown}; known: {sorted(OPERATIONS)}", file=sys.stderr)
        return 2
    import sglang

    results: dict[str, Any] = {
        "version": importlib.metadata.version("sglang"),
        "sglang_file": sglang.__file__,
    }
    # SGLang logs to stdout in places; keep stdout for the one JSON answer.
    with contextlib.redirect_stdout(sys.stderr):
        for name, op in ops.items():
            results[name] = OPERATIONS[name](op)
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
