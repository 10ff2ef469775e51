"""SGLang conformance, launch side: every SGLang preset's ``--launch-sglang`` command line parsed by SGLang's
own ``ServerArgs`` parser (``prepare_server_args``, what ``python -m sglang.launch_server`` runs), every
SGLang chat-template name we use found in SGLang's registry, and SGLang's template rendering a one-image
conversation sent by our client exactly where our own template puts the image (docs/backends.md, "What is
verified against SGLang, and how").

The SGLang code runs in one subprocess for this module (sglang_probe.py); negative controls in the same run
(a renamed flag, an unknown template name) show the checks can fail.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from llava_demo.backends import SamplingParams, collect
from llava_demo.backends.sglang import SGLangBackend, SGLangBackendConfig
from llava_demo.backends.sglang_launch import SGLangLaunchConfig, build_launch_argv, describe_launch
from llava_demo.backends.sglang_version import SGLANG_VERSION
from llava_demo.presets import SGLANG_TEMPLATE_EQUIVALENTS, load_presets, resolve_model
from tests.support.sglang_conformance import Reply, replay_server, run_probe, sglang_env_or_skip
from vision_common.chat.conversation import Conversation
from vision_common.chat.templates import get_template

FIELDS = [
    "model_path",
    "tokenizer_path",
    "chat_template",
    "enable_multimodal",
    "tp_size",
    "dp_size",
    "host",
    "port",
    "api_key",
    "served_model_name",
    "mem_fraction_static",
    "context_length",
]
DEFAULT = SGLangLaunchConfig()
FULL = SGLangLaunchConfig(
    host="0.0.0.0",
    tp=2,
    dp=4,
    served_model_name="llava-chat",
    mem_fraction_static=0.8,
    extra_args=("--context-length", "8192"),
)
QUESTION = "What is unusual about this image?"
# A renamed flag and an unknown template: SGLang must reject both, or these checks could never fail.
BAD_FLAG_ARGV = ["--model-path", "m", "--chat-template", "vicuna_v1.1", "--enable-multi-modal"]
UNKNOWN_TEMPLATE = "vicuna_v1.2"
FINISHED = (
    b'data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


def sglang_presets() -> list[str]:
    return sorted(name for name, preset in load_presets().items() if preset.backend == "sglang")


def launch_cases() -> dict[str, tuple[list[str], dict[str, Any]]]:
    """name -> (argv after ``-m sglang.launch_server``, the values we mean SGLang to read from it)."""
    cases = {}
    for preset in sglang_presets():
        model = resolve_model(preset)
        extra = dict(zip(model.sglang_extra_args[::2], model.sglang_extra_args[1::2]))
        for label, config, port, key in (("default", DEFAULT, 30000, None), ("full", FULL, 31234, "s3cret")):
            argv = build_launch_argv(model, config, port=port, api_key=key)
            assert argv[:3] == list(DEFAULT.command)
            cases[f"{preset}/{label}"] = (
                argv[3:],
                {
                    "model_path": model.checkpoint,
                    "tokenizer_path": extra.get("--tokenizer-path"),
                    "chat_template": model.sglang_chat_template,
                    "enable_multimodal": True,
                    "tp_size": config.tp,
                    "dp_size": config.dp,
                    "host": config.host,
                    "port": port,
                    "api_key": key,
                    "served_model_name": config.served_model_name or model.checkpoint,
                    "mem_fraction_static": config.mem_fraction_static,
                    "context_length": 8192 if config is FULL else None,
                },
            )
    return cases


def image() -> Image.Image:
    return Image.new("RGB", (40, 30), (200, 30, 60))


CONVERSATIONS = {
    "one image": Conversation().with_user(QUESTION, images=[image()]),
    "two turns": Conversation()
    .with_user(QUESTION, images=[image()])
    .with_assistant("A red square.")
    .with_user("And its size?"),
}


def sent_requests() -> list[dict[str, Any]]:
    """What our sglang backend actually puts on the wire for each conversation (captured by a server)."""
    replies = [Reply(200, FINISHED) for _ in CONVERSATIONS]
    with replay_server(replies) as (url, state):
        with SGLangBackend.start("llava-v1.6-vicuna-7b", SGLangBackendConfig(url=url)) as backend:
            for conversation in CONVERSATIONS.values():
                assert collect(backend.stream(conversation, SamplingParams.tiny())).text == "ok"
    return state.requests


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    env = sglang_env_or_skip()
    bodies = sent_requests()
    names = sorted(SGLANG_TEMPLATE_EQUIVALENTS)
    ops = {
        "parse_argv": {
            "argvs": {**{k: v[0] for k, v in launch_cases().items()}, "bad-flag": BAD_FLAG_ARGV},
            "fields": FIELDS,
        },
        "templates": {"names": [*names, UNKNOWN_TEMPLATE]},
        "render": [{"template": name, "body": body} for name in names for body in bodies],
    }
    return {"results": run_probe(env, ops), "bodies": bodies, "names": names}


@pytest.mark.slow
def test_every_sglang_preset_launch_line_parses_to_the_values_we_mean(probe: dict[str, Any]) -> None:
    parsed = probe["results"]["parse_argv"]
    cases = launch_cases()
    assert len(cases) == 2 * len(sglang_presets()) >= 4
    for name, (_, expected) in cases.items():
        assert "error" not in parsed[name], f"{name}: SGLang rejects our argv: {parsed[name]['error']}"
        values = parsed[name]["values"]
        # SGLang fills served_model_name from the model path when unset, after parsing: compare raw input.
        if expected["served_model_name"] == expected["model_path"]:
            expected = {**expected, "served_model_name": values["served_model_name"]}
            assert values["served_model_name"] in (None, expected["model_path"])
        assert values == expected, name


@pytest.mark.slow
def test_a_flag_sglang_does_not_know_fails_the_parse(probe: dict[str, Any]) -> None:
    error = probe["results"]["parse_argv"]["bad-flag"]["error"]
    assert "unrecognized arguments: --enable-multi-modal" in " ".join(error)


@pytest.mark.slow
def test_every_template_name_is_in_sglangs_registry(probe: dict[str, Any]) -> None:
    templates = probe["results"]["templates"]
    used = {preset.sglang_chat_template for preset in load_presets().values()} - {None}
    assert used and used <= set(probe["names"])
    assert {name: templates["exists"][name] for name in probe["names"]} == dict.fromkeys(probe["names"], True)
    assert set(probe["names"]) <= set(templates["registry"])
    assert templates["exists"][UNKNOWN_TEMPLATE] is False
    assert UNKNOWN_TEMPLATE not in templates["registry"]


def our_prompt(template: str, conversation: Conversation) -> str:
    return get_template(template).render(conversation).text


@pytest.mark.slow
def test_sglangs_templates_put_the_image_where_ours_do(probe: dict[str, Any]) -> None:
    rendered = iter(probe["results"]["render"])
    for name in probe["names"]:
        for label, conversation in CONVERSATIONS.items():
            result = next(rendered)
            assert "error" not in result, f"{name}/{label}: {result.get('error')}"
            assert result["images"] == 1 and result["modalities"] == ["image"]
            assert result["image_token"] == "<image>"
            prompt = result["prompt"]
            assert prompt.count("<image>") == 1
            # The image sits at the start of the first user text, followed by a newline, on both sides.
            assert f"<image>\n{QUESTION}" in prompt, f"{name}/{label}: {prompt!r}"
            equivalent = SGLANG_TEMPLATE_EQUIVALENTS[name]
            if equivalent is not None:
                # Declared equivalent (presets.py): SGLang's whole prompt is ours, character for character.
                assert prompt == our_prompt(equivalent, conversation), f"{name}/{label}"
                if result["stop"] is not None:  # vicuna_v1.1 stops on EOS alone (None)
                    assert set(result["stop"]) == set(get_template(equivalent).stop_strings), name
            else:
                # chatml-llava vs chatml_direct: other system text and "\n" after <|im_end|>, same user turn.
                turn = f"<|im_start|>user\n<image>\n{QUESTION}<|im_end|>"
                assert turn in prompt and turn in our_prompt("chatml_direct", conversation)


def test_the_sglang_extra_pins_the_targeted_version() -> None:
    # A regex, not tomllib: the project supports Python 3.10.
    pyproject = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text(encoding="utf-8")
    assert re.findall(r"^sglang = \[(.*)\]", pyproject, re.M) == [f'"sglang[all]=={SGLANG_VERSION}"']
    assert re.fullmatch(r"\d+\.\d+\.\d+", SGLANG_VERSION)


def test_the_launch_log_line_names_the_pinned_version_and_hides_the_key() -> None:
    model = resolve_model("llama3-llava-next-8b")
    argv = build_launch_argv(
        model, replace(DEFAULT, command=("python", "-m", "sglang.launch_server")), port=1
    )
    line = describe_launch(model.name, [*argv, "--api-key", "k"], installed=None)
    assert f"sglang=={SGLANG_VERSION}" in line and "llama3-llava-next-8b" in line
    assert "--api-key '***'" in line and " k" not in line.split("--api-key")[1]
    assert "--chat-template llava_llama_3" in line
    assert "installed" in describe_launch(model.name, argv, installed="0.5.22")


@pytest.mark.slow
def test_the_sglang_folder_holds_sglang_and_small_deps_only() -> None:
    env = sglang_env_or_skip()
    names = {path.name for path in env.path.iterdir()}
    assert "sglang" in names
    # Nothing the venv pins: the project's torch, transformers and pydantic must be the ones SGLang imports.
    assert not names & {"torch", "transformers", "pydantic", "tokenizers", "numpy", "fastapi", "openai"}
