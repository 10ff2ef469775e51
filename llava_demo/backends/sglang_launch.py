"""Launching ``python -m sglang.launch_server`` for a preset as a managed subprocess.

``build_launch_argv`` is a pure function from a resolved preset to the argument list (never a shell string),
with the flags serving.md §1-2 calls for: the model path, a tokenizer path where the preset names one,
``--chat-template`` (SGLang's fallback Jinja templates drop images), ``--enable-multimodal``, tp/dp, a
loopback host, the port and the API key. ``SGLangServer`` starts it in its own process group (SGLang spawns
scheduler and detokenizer processes), keeps the tail of its output, waits for ``GET /health`` to answer 200
and stops the whole group on ``close`` (SIGTERM, then SIGKILL after a grace period).

SGLang is a GPU-only extra and is not installed where this project is tested; the tests run the same code
with a small fake server script in place of the ``sglang.launch_server`` module, and check the argv with
SGLang's own parser (tests/llava_demo/backends/test_sglang_conformance_launch.py) for the pinned ``SGLANG_VERSION``.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import logging
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx

from llava_demo.backends.base import BackendUnavailable
from llava_demo.backends.sglang_version import SGLANG_VERSION
from llava_demo.presets import ResolvedModel

SGLANG_MODULE = "sglang.launch_server"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SGLangLaunchConfig:
    """Flags for ``sglang.launch_server`` and how long to wait for it."""

    host: str = "127.0.0.1"
    """Loopback by default: the server has no auth unless ``api_key`` is set."""
    port: int | None = 30000
    """None picks a free port."""
    tp: int = 1
    dp: int = 1
    chat_template: str | None = None
    """Overrides the preset's ``sglang_chat_template``."""
    served_model_name: str | None = None
    mem_fraction_static: float | None = None
    extra_args: tuple[str, ...] = ()
    """Appended verbatim after the flags built here."""
    command: tuple[str, ...] = (sys.executable, "-m", SGLANG_MODULE)
    """What runs the server; tests put a fake server script here."""
    startup_timeout_s: float = 900.0
    """Model download + load + CUDA-graph capture can take many minutes."""
    shutdown_timeout_s: float = 30.0
    health_poll_s: float = 1.0
    output_tail_lines: int = 40

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("SGLangLaunchConfig.host must be a host name or address")
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535
        ):
            raise ValueError(f"SGLangLaunchConfig.port must be 1..65535 or None, got {self.port!r}")
        for name in ("tp", "dp", "output_tail_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SGLangLaunchConfig.{name} must be a positive integer, got {value!r}")
        if self.mem_fraction_static is not None and not 0 < self.mem_fraction_static < 1:
            raise ValueError(
                f"SGLangLaunchConfig.mem_fraction_static must be in (0, 1), got {self.mem_fraction_static}"
            )
        for name in ("startup_timeout_s", "shutdown_timeout_s", "health_poll_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"SGLangLaunchConfig.{name} must be a positive number, got {value!r}")
        object.__setattr__(self, "extra_args", tuple(self.extra_args))
        object.__setattr__(self, "command", tuple(self.command))
        if not self.command or not all(isinstance(a, str) and a for a in (*self.command, *self.extra_args)):
            raise ValueError("SGLangLaunchConfig.command and extra_args must be non-empty strings")
        managed = {
            "--model-path",
            "--model",
            "--host",
            "--port",
            "--chat-template",
            "--api-key",
            "--tp-size",
            "--tp",
            "--dp-size",
        }
        clashes = sorted(managed & {a.split("=", 1)[0] for a in self.extra_args})
        if clashes:
            raise ValueError(f"SGLangLaunchConfig.extra_args repeats flags set from the config: {clashes}")


def build_launch_argv(
    model: ResolvedModel, config: SGLangLaunchConfig, *, port: int, api_key: str | None = None
) -> list[str]:
    """The full argument list that starts SGLang for ``model`` on ``port`` (a pure function)."""
    chat_template = config.chat_template or model.sglang_chat_template
    if chat_template is None:
        raise ValueError(
            f"model {model.name!r} has no SGLang chat template (backend {model.backend!r}); SGLang would fall "
            "back to the tokenizer's text-only template and drop images. Pass chat_template=..., or serve "
            "llava-hf checkpoints with the local backend (LlavaNextForConditionalGeneration is not native "
            "in SGLang)"
        )
    argv = [*config.command, "--model-path", model.checkpoint, *model.sglang_extra_args]
    argv += ["--chat-template", chat_template, "--enable-multimodal"]
    argv += ["--tp-size", str(config.tp), "--dp-size", str(config.dp)]
    argv += ["--host", config.host, "--port", str(port)]
    if api_key:
        argv += ["--api-key", api_key]
    if config.served_model_name:
        argv += ["--served-model-name", config.served_model_name]
    if config.mem_fraction_static is not None:
        argv += ["--mem-fraction-static", str(config.mem_fraction_static)]
    return [*argv, *config.extra_args]


def installed_sglang_version(command: Sequence[str]) -> str | None:
    """The sglang version ``command`` will run when it is this interpreter (None: unknown or not installed)."""
    if not command or command[0] != sys.executable:
        return None
    try:
        return importlib.metadata.version("sglang")
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_launch(model_name: str, argv: Sequence[str], *, installed: str | None) -> str:
    """The log line for a launch: the pinned version (and the installed one when it differs), the argv with
    the API key hidden."""
    version = f"sglang=={SGLANG_VERSION}"
    if installed is not None and installed != SGLANG_VERSION:
        version += f"; installed here: {installed}, untested"
    return (
        f"launching SGLang for {model_name} (this project targets {version}): {shlex.join(_redacted(argv))}"
    )


def pick_port(host: str, port: int | None) -> int:
    """``port`` if nothing listens there (else ``BackendUnavailable``), or a free port when None."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port or 0))
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot launch SGLang on {host}:{port}: {exc.strerror or exc}; attach to the running server "
                "with url=... or choose another port"
            ) from exc
        return int(probe.getsockname()[1])


def _drain(stream: IO[str], tail: collections.deque[str]) -> None:
    # Reading continuously also keeps a chatty server from blocking on a full pipe.
    for line in stream:
        tail.append(line.rstrip("\n"))


class SGLangServer:
    """A running SGLang server process started by us. ``close`` is idempotent."""

    def __init__(
        self, process: subprocess.Popen[str], argv: list[str], base_url: str, config: SGLangLaunchConfig
    ) -> None:
        self.process = process
        self.argv = argv
        self.base_url = base_url
        self.config = config
        self.output_tail: collections.deque[str] = collections.deque(maxlen=config.output_tail_lines)
        assert process.stdout is not None
        self._reader = threading.Thread(target=_drain, args=(process.stdout, self.output_tail), daemon=True)
        self._reader.start()

    @classmethod
    def start(
        cls,
        model: ResolvedModel,
        config: SGLangLaunchConfig,
        *,
        api_key: str | None = None,
        env: dict[str, str] | None = None,
    ) -> SGLangServer:
        port = pick_port(config.host, config.port)
        argv = build_launch_argv(model, config, port=port, api_key=api_key)
        log.info(describe_launch(model.name, argv, installed=installed_sglang_version(config.command)))
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group, so close() reaches SGLang's children too
                env={**os.environ, **(env or {})},
            )
        except OSError as exc:
            raise BackendUnavailable(f"cannot start SGLang ({argv[0]}): {exc.strerror or exc}") from exc
        host = f"[{config.host}]" if ":" in config.host else config.host
        server = cls(process, argv, f"http://{host}:{port}", config)
        try:
            server.wait_healthy()
        except BaseException:
            server.close()
            raise
        return server

    def tail_text(self) -> str:
        return "\n".join(self.output_tail) or "(no output)"

    def wait_healthy(self) -> None:
        """Poll ``GET /health`` until 200; the process dying or the deadline passing is ``BackendUnavailable``
        with the last lines the server printed."""
        deadline = time.monotonic() + self.config.startup_timeout_s
        last = "no answer yet"
        with httpx.Client(timeout=min(5.0, self.config.health_poll_s * 5)) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    self._reader.join(timeout=1.0)  # collect the final lines
                    raise BackendUnavailable(
                        f"SGLang exited with code {code} while starting; its last output:\n{self.tail_text()}"
                    )
                try:
                    response = client.get(f"{self.base_url}/health")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                if time.monotonic() >= deadline:
                    raise BackendUnavailable(
                        f"SGLang did not become healthy at {self.base_url}/health within "
                        f"{self.config.startup_timeout_s:g} s (last: {last}); its last output:\n{self.tail_text()}"
                    )
                time.sleep(self.config.health_poll_s)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def health(self) -> dict[str, Any]:
        return {
            "pid": self.process.pid,
            "alive": self.alive,
            "returncode": self.process.poll(),
            "argv": _redacted(self.argv),
        }

    def close(self) -> None:
        """SIGTERM the process group, SIGKILL it after ``shutdown_timeout_s``, then reap."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.config.shutdown_timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait()
        self._reader.join(timeout=1.0)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)


def _redacted(argv: Sequence[str]) -> list[str]:
    """The argv with the API key hidden, for health reports and logs."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--api-key":
            out[i + 1] = "***"
    return out
