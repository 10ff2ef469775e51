"""Wait until a spawned Gradio app answers (it prints "Running on local URL" before it does; gradio.md §9)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest


def wait_until_gradio_answers(
    process: subprocess.Popen, url: str, log_path: Path, name: str, timeout_s: float
) -> None:
    """Poll ``/gradio_api/info``; fail with the log's tail if the process exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not answer within {timeout_s} s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
