"""What the API-server benches share: waiting for a server subprocess to answer ``/health``."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_until_healthy(process: subprocess.Popen, url: str, timeout_s: float) -> None:
    """Return once ``url``/health answers 200; exit the bench if the server dies or stays silent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not become healthy within {timeout_s:.0f} s")
