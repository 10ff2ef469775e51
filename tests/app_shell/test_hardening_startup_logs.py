"""Issue 19, defect 8 of the issue (newcomer paths): start-up logs without optional-import tracebacks or
deprecation walls at INFO (faiss' loader reported each missing SIMD build as a ModuleNotFoundError)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("ModuleNotFoundError", "Traceback", "Deprecat", "faiss.loader", "httpx: HTTP Request")
IMPORT_FAISS = "import faiss, logging; logging.getLogger('x').info('ready')"


def _stderr(code: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.slow
def test_configure_logging_keeps_our_info_and_drops_the_optional_import_noise():
    plain = _stderr(f"import logging; logging.basicConfig(level=logging.INFO); {IMPORT_FAISS}")
    assert "faiss.loader" in plain  # what a plain INFO set-up shows (so this test can fail)
    ours = _stderr(
        f"from vision_common.logging_setup import configure_logging; configure_logging(); {IMPORT_FAISS}"
    )
    assert "INFO x: ready" in ours
    assert not [word for word in NOISE if word in ours], ours


@pytest.mark.slow
def test_the_app_starts_without_noise(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "app.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "app.py", "--no-preload", "--port", str(port),
                                    "--feedback-log", "", "--react-no-background-build"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not start within 240 s")
        time.sleep(1)
    finally:
        process.terminate()
        process.wait(30)
    text = log.read_text()
    assert "Running on local URL" in text
    assert not [word for word in NOISE if word in text], text
