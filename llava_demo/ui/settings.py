"""The app's settings: one typed, validated record built from flags and environment variables (``app_args``).

No Gradio import here: ``python app.py --help`` and start-up errors must not wait for Gradio's import (~9 s on
two cores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava_demo.backends.base import BACKEND_KINDS, BackendKind
from llava_demo.server.config import DEFAULT_MODEL
from vision_common.images.limits import ImageLimits
from vision_common.network import is_loopback_host
from vision_common.paths import PROJECT_ROOT

DEFAULT_PORT = 7860  # Gradio's and Hugging Face Spaces' port
_MIB = 1024 * 1024
# One upload is at most this big; above it Gradio's own limit and the image loader refuse the file.
MAX_UPLOAD_MB_LIMIT = 1024
# A paced stream is for demos and UI tests; more than 5 s per chunk would look like a hang.
MAX_STREAM_DELAY_MS = 5000
# Folders scanned for trained checkpoints (the embedded assets and the trainer's runs).
DEFAULT_CHECKPOINT_ROOTS = (PROJECT_ROOT / "assets", PROJECT_ROOT / "runs")
DEFAULT_FEEDBACK_LOG = PROJECT_ROOT / "runs" / "app" / "feedback.jsonl"


class SettingsError(ValueError):
    """Contradictory or out-of-range app settings; the message names the flag (and its variable)."""


@dataclass(frozen=True)
class ChatSettings:
    """How ``python app.py`` serves. Each field has a flag and an ``APP_*`` variable (``app_shell.args``)."""

    backend: BackendKind = "local"
    """local: transformers in this process; sglang: attach (``server_url``) or launch; openai: any server."""
    model: str = DEFAULT_MODEL
    """Preset name, checkpoint folder or hub id (local, or what SGLang launches); the served name otherwise."""
    server_url: str | None = None
    """SGLang or OpenAI-compatible server to talk to (sglang/openai backends)."""
    launch_sglang: bool = False
    """sglang backend: start ``sglang.launch_server`` for ``model`` instead of attaching to a URL."""
    api_key: str | None = None
    """Bearer key for ``server_url``."""
    device: str = "auto"
    """local backend: auto, cpu, cuda, cuda:N or mps."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    """0 picks a free port."""
    max_upload_mb: int = 20
    """Largest uploaded file; Gradio refuses bigger uploads and the image loader re-checks API inputs."""
    concurrency: int = 1
    """Generations running at once (the queue's limit for the generating events; others wait their turn)."""
    feedback_log: Path | None = DEFAULT_FEEDBACK_LOG
    """JSONL file that like/dislike clicks are appended to; None turns feedback off."""
    examples_file: Path | None = None
    """examples.json with scene images and questions; None: the first one found under assets/."""
    stream_delay_ms: int = 0
    """Pause between streamed chunks (demos, UI tests of Stop); 0 streams as fast as the model writes."""
    preload: bool = True
    """Load the default model before serving, so 'ready' means a first question is answered at once."""
    max_loaded_models: int = 2
    """Models kept in memory when users switch models; the least recently used one is closed."""
    checkpoint_roots: tuple[Path, ...] = DEFAULT_CHECKPOINT_ROOTS

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_KINDS:
            raise SettingsError(f"--backend must be one of {BACKEND_KINDS}, got {self.backend!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise SettingsError("--model must not be empty")
        if self.backend == "local" and (self.server_url or self.launch_sglang):
            raise SettingsError(
                "--sglang-url/--openai-url/--launch-sglang need --backend sglang or openai; the local "
                "backend runs the model in this process"
            )
        if self.backend == "openai" and not self.server_url:
            raise SettingsError("--backend openai needs --openai-url (the OpenAI-compatible server)")
        if self.backend == "openai" and self.launch_sglang:
            raise SettingsError("--launch-sglang starts SGLang: use it with --backend sglang")
        if self.backend == "sglang" and bool(self.server_url) == self.launch_sglang:
            raise SettingsError(
                "--backend sglang needs exactly one of --sglang-url (attach to a running server) and "
                "--launch-sglang (start one)"
            )
        if not self.host:
            raise SettingsError("--host must not be empty (127.0.0.1 serves this machine only)")
        _check_int("--port", self.port, 0, 65535)
        _check_int("--max-upload-mb", self.max_upload_mb, 1, MAX_UPLOAD_MB_LIMIT)
        _check_int("--concurrency", self.concurrency, 1, 64)
        _check_int("--stream-delay-ms", self.stream_delay_ms, 0, MAX_STREAM_DELAY_MS)
        _check_int("max_loaded_models", self.max_loaded_models, 1, 8)
        if self.examples_file is not None and not Path(self.examples_file).is_file():
            raise SettingsError(f"--examples: {self.examples_file} is not a file")
        object.__setattr__(self, "checkpoint_roots", tuple(Path(p) for p in self.checkpoint_roots))

    @property
    def loopback_only(self) -> bool:
        """True when the bind address is reachable from this machine only."""
        return is_loopback_host(self.host)

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * _MIB

    def image_limits(self) -> ImageLimits:
        """What uploads may be: the upload cap, no fetching of URLs (uploads are files Gradio stored)."""
        return ImageLimits(max_bytes=self.max_upload_bytes, allow_remote_urls=False)

    def backend_options(self) -> dict[str, Any]:
        """``make_backend`` options for the configured backend kind."""
        if self.backend == "local":
            return {"device": self.device, "image_limits": self.image_limits()}
        options: dict[str, Any] = {"image_limits": self.image_limits()}
        if self.server_url:
            options["url" if self.backend == "sglang" else "base_url"] = self.server_url
        if self.api_key:
            options["api_key"] = self.api_key
        return options

    @classmethod
    def tiny(cls, **overrides: Any) -> ChatSettings:
        """For tests: a free port, no preload, no feedback file, 1 MiB uploads, two generations at once."""
        values: dict[str, Any] = {
            "port": 0,
            "preload": False,
            "feedback_log": None,
            "max_upload_mb": 1,
            "concurrency": 2,
            "device": "cpu",
        }
        values.update(overrides)
        return cls(**values)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(f"{name} must be an integer in {low}..{high}, got {value!r}")
