"""The SGLang launcher and backend: command lines per preset (pure), and launch / attach / shutdown with the
fake server script standing in for ``python -m sglang.launch_server`` (SGLang itself is GPU-only)."""

from __future__ import annotations

import json
import signal
import sys

import pytest
from PIL import Image

from llava_demo.backends import BackendUnavailable, make_backend
from llava_demo.backends.sglang import SGLangBackendConfig
from llava_demo.backends.sglang_launch import SGLangLaunchConfig, build_launch_argv, pick_port
from llava_demo.presets import load_presets, resolve_model
from tests.support import fake_openai_server
from tests.support.fake_openai_server import FakeServer, free_port
from vision_common.chat.conversation import Conversation

# The fake server script runs where "python -m sglang.launch_server" would.
FAKE = (sys.executable, fake_openai_server.__file__)
PY = sys.executable


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (
            "llava-v1.6-vicuna-7b",
            [PY, "-m", "sglang.launch_server", "--model-path", "liuhaotian/llava-v1.6-vicuna-7b",
             "--tokenizer-path", "llava-hf/llava-1.5-7b-hf", "--chat-template", "vicuna_v1.1",
             "--enable-multimodal", "--tp-size", "1", "--dp-size", "1", "--host", "127.0.0.1", "--port", "30000"],
        ),
        (
            "llama3-llava-next-8b",
            [PY, "-m", "sglang.launch_server", "--model-path", "lmms-lab/llama3-llava-next-8b",
             "--chat-template", "llava_llama_3", "--enable-multimodal", "--tp-size", "1", "--dp-size", "1",
             "--host", "127.0.0.1", "--port", "30000"],
        ),
    ],
)  # fmt: skip
def test_launch_argv_per_sglang_preset(preset, expected):
    assert build_launch_argv(resolve_model(preset), SGLangLaunchConfig(), port=30000) == expected


def test_every_sglang_preset_gets_a_chat_template_and_multimodal_flag():
    sglang_presets = [p for p in load_presets().values() if p.backend == "sglang"]
    assert sglang_presets
    for preset in sglang_presets:
        argv = build_launch_argv(resolve_model(preset.name), SGLangLaunchConfig(), port=1)
        assert argv[argv.index("--chat-template") + 1] == preset.sglang_chat_template
        assert "--enable-multimodal" in argv and argv[argv.index("--model-path") + 1] == preset.checkpoint


def test_launch_argv_options_key_name_parallelism_and_extras():
    config = SGLangLaunchConfig(
        tp=2, dp=4, served_model_name="llava", mem_fraction_static=0.8, extra_args=("--trust-remote-code",)
    )
    argv = build_launch_argv(resolve_model("llama3-llava-next-8b"), config, port=31000, api_key="k3y")
    assert argv[argv.index("--tp-size") + 1] == "2" and argv[argv.index("--dp-size") + 1] == "4"
    assert argv[argv.index("--api-key") + 1] == "k3y" and argv[argv.index("--port") + 1] == "31000"
    assert argv[argv.index("--served-model-name") + 1] == "llava"
    assert argv[argv.index("--mem-fraction-static") + 1] == "0.8"
    assert argv[-1] == "--trust-remote-code"


def test_llava_hf_checkpoints_are_refused_unless_a_template_is_given():
    resolved = resolve_model("llava-v1.6-mistral-7b-hf")
    with pytest.raises(ValueError, match="drop images.*local backend"):
        build_launch_argv(resolved, SGLangLaunchConfig(), port=1)
    argv = build_launch_argv(resolved, SGLangLaunchConfig(chat_template="/tmp/mistral.json"), port=1)
    assert argv[argv.index("--chat-template") + 1] == "/tmp/mistral.json"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_args": ("--port", "1")}, r"repeats flags .*--port"),
        ({"extra_args": ("--chat-template=x",)}, "repeats flags"),
        ({"tp": 0}, "tp must be a positive integer"),
        ({"port": 70000}, "port must be 1..65535"),
        ({"mem_fraction_static": 1.5}, "mem_fraction_static"),
    ],
)
def test_launch_config_rejects_contradictions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGLangLaunchConfig(**kwargs)


def test_backend_config_rejects_url_with_launch_options_and_routes_flat_options():
    with pytest.raises(ValueError, match="launch options would be ignored"):
        SGLangBackendConfig(url="http://127.0.0.1:1", launch=SGLangLaunchConfig(tp=2))
    config = SGLangBackendConfig.from_options(port=None, tp=2, api_key="k")
    assert config.launch.tp == 2 and config.launch.port is None and config.api_key == "k"


# -- with the fake server as "sglang" -------------------------------------------------------------------------


def launch_fake(tmp_path, *extra: str, **options):
    record = tmp_path / "record.jsonl"
    backend = make_backend(
        "sglang",
        "llama3-llava-next-8b",
        command=FAKE,
        port=None,
        health_poll_s=0.05,
        extra_args=("--record", str(record), *extra),
        **options,
    )
    return backend, record


def recorded(record) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()]


@pytest.mark.slow
def test_launch_waits_for_health_streams_and_shuts_down(tmp_path):
    backend, record = launch_fake(tmp_path, "--health-delay", "0.4", api_key="s3cret")
    try:
        health = backend.health()
        assert health["status"] == "ok" and health["server"] == "launched" and health["process"]["alive"]
        assert "s3cret" not in json.dumps(health)  # the key is redacted from reports
        two_images = [Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")]
        done = backend.complete(Conversation().with_user("hi", images=two_images))
        assert done.text == "Hello, world [model=default images=2 max_tokens=512]"
        argv_line, request_line = recorded(record)
        argv = argv_line["argv"]
        assert argv[argv.index("--chat-template") + 1] == "llava_llama_3" and "--enable-multimodal" in argv
        assert argv[argv.index("--api-key") + 1] == "s3cret" and request_line["auth"] == "Bearer s3cret"
        parts = request_line["request"]["messages"][0]["content"]
        assert [p.get("modalities") for p in parts[:2]] == ["multi-images", "multi-images"]
        process = backend.server.process
    finally:
        backend.close()
    assert process.returncode == -signal.SIGTERM
    pick_port("127.0.0.1", int(argv[argv.index("--port") + 1]))  # the port is free again
    backend.close()  # idempotent


@pytest.mark.slow
def test_a_crash_at_start_reports_the_exit_code_and_output(tmp_path):
    with pytest.raises(
        BackendUnavailable, match=r"exited with code 3 while starting(.|\n)*CUDA is not available"
    ):
        launch_fake(tmp_path, "--crash-on-start")


@pytest.mark.slow
def test_a_server_that_never_gets_healthy_times_out_and_is_stopped(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"did not become healthy .* within 1 s \(last: HTTP 503\)"):
        launch_fake(tmp_path, "--health-delay", "100", startup_timeout_s=1)
    argv = recorded(tmp_path / "record.jsonl")[0]["argv"]
    pick_port("127.0.0.1", int(argv[argv.index("--port") + 1]))  # nothing listens there any more


@pytest.mark.slow
def test_a_busy_port_is_refused_with_a_hint_to_attach(tmp_path):
    fake = FakeServer(tmp_path).start()
    try:
        with pytest.raises(BackendUnavailable, match="in use.*attach"):
            make_backend("sglang", "llama3-llava-next-8b", command=FAKE, port=fake.port)
    finally:
        fake.kill()


@pytest.mark.slow
def test_a_launched_server_that_died_is_reported_with_its_output(tmp_path):
    backend, _ = launch_fake(tmp_path)
    backend.server.process.kill()
    backend.server.process.wait()
    with pytest.raises(BackendUnavailable, match="has exited"):
        backend.stream(Conversation().with_user("hi"))
    assert backend.health()["status"] == "exited"
    backend.close()


@pytest.mark.slow
def test_attach_to_a_running_server_by_url(tmp_path):
    fake = FakeServer(tmp_path, "--api-key", "k").start()
    try:
        backend = make_backend("sglang", "my-llava", url=f"http://127.0.0.1:{fake.port}", api_key="k")
        assert backend.model_id == "my-llava" and backend.server is None
        assert backend.complete(Conversation().with_user("hi")).finish_reason == "stop"
        assert backend.health()["server"] == "attached"
        backend.close()
    finally:
        fake.kill()


def test_attach_to_nothing_is_unavailable():
    backend = make_backend("sglang", "x", url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        backend.complete(Conversation().with_user("hi"))
