"""Run an ASGI app with uvicorn in a background thread: for tests, benchmarks and embedding the server in
another program (the Gradio app, a notebook) without a second process."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn


class BackgroundServer:
    """``with BackgroundServer(app) as server: httpx.get(server.url + "/health")``.

    Binds 127.0.0.1 and a free port by default; ``url`` is known once ``start`` returns.
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"
    ) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, lifespan="off", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"uvicorn stopped during start-up on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {timeout_s:g} s")
            time.sleep(0.01)
        sockets = [sock for server in self._server.servers for sock in server.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            # Streams still open after the grace period: close them.
            self._server.force_exit = True
            self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
