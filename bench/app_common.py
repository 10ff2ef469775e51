"""Shared by the app benches: pick the model (the embedded one, or a tiny random one with a note), start
``python app.py`` in a subprocess and wait until it answers, and a test image."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
READY_TIMEOUT_S = 120


@dataclass
class ModelChoice:
    model: str
    note: str


def pick_model(requested: str | None, scratch: Path) -> ModelChoice:
    """``requested``, else the embedded model when built, else a tiny random LLaVA-NeXT built in ``scratch``."""
    from llava_demo.server.cli import StartupError, check_local_model
    from llava_demo.server.config import DEFAULT_MODEL

    if requested:
        return ModelChoice(requested, f"model given: {requested}")
    try:
        check_local_model(DEFAULT_MODEL)
        return ModelChoice(DEFAULT_MODEL, f"embedded model {DEFAULT_MODEL}")
    except StartupError as exc:
        sys.path.insert(0, str(ROOT))  # the tests' builder: tests/support/tiny_llava.py
        from tests.support.tiny_llava import build_tiny_llava

        folder = build_tiny_llava(scratch / "tiny-llava", hidden=256, layers=4)
        return ModelChoice(
            str(folder),
            f"FALLBACK: the embedded model is missing ({str(exc).split('(')[0].strip()}); a tiny random "
            "LLaVA-NeXT (hidden 256, 4 layers) stands in, so the numbers are not the embedded model's",
        )


def test_image(scratch: Path) -> Path:
    """A SynthWorld example scene when the recipe wrote one, else a drawn 320x240 scene."""
    from llava_demo.ui.examples import find_examples_file, load_examples

    examples_file = find_examples_file()
    if examples_file is not None:
        return load_examples(examples_file)[0].image
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (320, 240), (235, 235, 225))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 40, 120, 120), fill=(200, 40, 40))
    draw.rectangle((180, 100, 280, 200), fill=(40, 90, 200))
    path = scratch / "scene.png"
    image.save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningApp:
    process: subprocess.Popen
    url: str
    spawned_at: float
    ready_s: float
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``/gradio_api/info`` (Gradio prints its URL before the server answers)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the app did not answer within {timeout_s} s:\n{log.read_text()[-2000:]}")


def start(command: list[str], scratch: Path, name: str) -> RunningApp:
    """Run ``command`` (its port must be in it via {port}) and wait until it serves."""
    port = free_port()
    argv = [part.replace("{port}", str(port)) for part in command]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    log = scratch / f"{name}.log"
    spawned = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, process, log)
    except BaseException:
        process.kill()
        raise
    return RunningApp(process, url, spawned, time.perf_counter() - spawned, log)


def app_command(model: str) -> list[str]:
    """``python app.py`` on ``model``, port filled in by ``start``, feedback logging off."""
    # No background index build: it would take the CPU the chat timings measure.
    return [sys.executable, "app.py", "--model", model, "--port", "{port}", "--feedback-log", "",
            "--react-no-background-build"]  # fmt: skip


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="app-bench-")
