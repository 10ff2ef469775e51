"""Acceptance: ``python -m llava_demo.server`` as a real process on a tiny model. Killed mid-stream, its
clients get a clear error (not a hang, not a bare traceback); restarted on the same port, the next request
works with the same client objects. Also: start-up errors exit 2 with a message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from llava_demo.backends import BackendUnavailable, SamplingParams, make_backend
from llava_demo.server.cli import EXIT_STARTUP_ERROR, main
from tests.support.paths import REPO_ROOT
from vision_common.chat.conversation import Conversation, Message

# Long enough that the answer is still streaming when the server is killed after its first token.
LONG_ANSWER = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "llava_demo.server", "--model", str(model), "--device", "cpu"]
    command += ["--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {process.stdout.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not become healthy within 90 s")


@pytest.fixture(scope="module")
def endless_model(tiny_llava_endless_dir: Path) -> Path:
    # EOS suppressed: an uncancelled answer runs to max_tokens.
    return tiny_llava_endless_dir


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.slow
def test_killed_mid_stream_gives_a_clear_error_and_restart_works(
    endless_model: Path, processes: list[subprocess.Popen]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    processes.append(start_server(endless_model, port))
    question = Conversation((Message("user", "Tell me a long story."),))
    long_params = SamplingParams(temperature=0.0, max_new_tokens=LONG_ANSWER)
    with make_backend("openai", "default", base_url=url, read_timeout_s=30.0) as remote:
        events = remote.stream(question, long_params)
        first = next(e for e in events if e.kind == "delta")
        assert first.text
        processes[0].send_signal(signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="closed the connection before the answer was complete"):
            for _ in events:
                pass
        assert time.monotonic() - started < 10

        # The official client also fails loudly rather than returning a truncated answer as complete.
        with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
            openai.OpenAI(base_url=url, api_key="x", max_retries=0).chat.completions.create(
                model="default", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )

        processes.append(start_server(endless_model, port))
        short = remote.complete(question, SamplingParams(temperature=0.0, max_new_tokens=5))
        assert (
            short.finish_reason == "length" and short.usage is not None and short.usage.completion_tokens == 5
        )

    client = openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)
    streamed = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Tell me a long story."}],
        max_tokens=5,
        temperature=0,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == short.text


def test_start_up_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--template", "nope"]) == EXIT_STARTUP_ERROR
    assert "--template: unknown template 'nope'; valid names:" in capsys.readouterr().err
    assert main(["--backend", "openai"]) == EXIT_STARTUP_ERROR
    assert "needs --backend-url" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "nothing-here")]) == EXIT_STARTUP_ERROR
    assert "not an existing directory" in capsys.readouterr().err
    assert main(["--image-root", str(tmp_path / "absent")]) == EXIT_STARTUP_ERROR
    assert "image_root" in capsys.readouterr().err
