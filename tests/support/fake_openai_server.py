"""A stand-in OpenAI-compatible (SGLang-shaped) server for backend tests: stdlib only, run as a script.

``python tests/support/fake_openai_server.py --port N [--api-key K] [--record FILE] [--health-delay S]`` serves
``GET /health``, ``GET /v1/models`` and streaming ``POST /v1/chat/completions`` with SGLang's chunk sequence
(serving.md §3): a role chunk, content deltas, a finish chunk, a usage chunk with ``"choices": []``, then
``[DONE]``. The last user text picks the behaviour, so one process covers every case:

* ``error``  -> one delta, then ``data: {"error": {...}}`` as SGLang sends mid-stream failures;
* ``slow``   -> a delta every 0.1 s for 60 s (kill it or cancel the client mid-stream);
* ``silent`` -> the role chunk, then nothing for 60 s (read timeouts, cancelling a blocked read);
* ``bad``    -> HTTP 400 with an OpenAI error body;
* anything else -> "Hello, world" plus a summary of the request (model, images, max_tokens).

The launcher tests start it in place of ``python -m sglang.launch_server``: unknown SGLang flags are
accepted, ``--crash-on-start`` writes to stderr and exits 3, and ``--record`` saves each request body and the
process argv as JSON lines so tests can inspect them.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STARTED = time.monotonic()


def last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


def count_images(body: dict) -> int:
    return sum(
        1
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    )


def make_handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *values: object) -> None:  # keep test output quiet
            pass

        def send_json(self, status: int, obj: dict) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                ready = time.monotonic() - STARTED >= args.health_delay
                self.send_json(200 if ready else 503, {"ok": ready})
            elif self.path == "/v1/models":
                self.send_json(
                    200, {"object": "list", "data": [{"id": args.served_model_name, "object": "model"}]}
                )
            else:
                self.send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def send_event(self, obj: object) -> None:
            payload = obj if isinstance(obj, str) else json.dumps(obj)
            data = f"data: {payload}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def chunk(self, delta: dict, finish: str | None = None) -> dict:
            return {
                "id": "fake-1",
                "object": "chat.completion.chunk",
                "model": args.served_model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if args.record:
                with open(args.record, "a", encoding="utf-8") as handle:
                    handle.write(
                        json.dumps({"request": body, "auth": self.headers.get("Authorization")}) + "\n"
                    )
            if self.path != "/v1/chat/completions":
                self.send_json(404, {"error": {"message": f"no route {self.path}"}})
                return
            if args.api_key and self.headers.get("Authorization") != f"Bearer {args.api_key}":
                self.send_json(401, {"error": {"message": "Unauthorized", "type": "auth"}})
                return
            text = last_user_text(body)
            if text == "bad":
                self.send_json(400, {"object": "error", "message": "max_tokens is too large", "code": 400})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.send_event(self.chunk({"role": "assistant", "content": ""}))
            if text == "silent":
                time.sleep(60)
            elif text == "slow":
                for _ in range(600):
                    self.send_event(self.chunk({"content": "."}))
                    time.sleep(0.1)
            elif text == "error":
                self.send_event(self.chunk({"content": "partial"}))
                self.send_event(
                    {
                        "error": {
                            "object": "error",
                            "message": "out of KV cache",
                            "type": "Internal",
                            "code": 500,
                        }
                    }
                )
            else:
                summary = f" [model={body.get('model')} images={count_images(body)} max_tokens={body.get('max_tokens')}]"
                for piece in ("Hello", ", ", "world", summary):
                    self.send_event(self.chunk({"content": piece}))
                self.send_event(self.chunk({}, finish="stop"))
                if body.get("stream_options", {}).get("include_usage"):
                    usage = {"prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21}
                    self.send_event(
                        {"id": "fake-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
                    )
            self.send_event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FakeServer:
    """This script as a subprocess on a fixed port, so a test can kill it and restart it there."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.record = Path(tmp_path) / f"requests-{self.port}.jsonl"
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        argv = [sys.executable, __file__, "--port", str(self.port), "--record", str(self.record)]
        self.process = subprocess.Popen([*argv, *self.args])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("the fake server did not start within 20 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def requests(self) -> list[dict]:
        """The recorded request bodies (with their Authorization header), oldest first."""
        if not self.record.exists():
            return []
        lines = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [line for line in lines if "request" in line]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--served-model-name", default="default")
    parser.add_argument("--record", default=None)
    parser.add_argument("--health-delay", type=float, default=0.0)
    parser.add_argument("--crash-on-start", action="store_true")
    args, _unknown_sglang_flags = parser.parse_known_args()
    if args.record:
        with open(args.record, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"argv": sys.argv[1:]}) + "\n")
    if args.crash_on_start:
        print("RuntimeError: CUDA is not available (fake crash)", file=sys.stderr, flush=True)
        sys.exit(3)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
