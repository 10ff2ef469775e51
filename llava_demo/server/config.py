"""The API server's settings: one typed, validated record built from the command line or by tests."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llava_demo.backends.base import BACKEND_KINDS, BackendKind
from llava_demo.server.text_bounds import TextBounds
from vision_common.images.limits import ImageLimits
from vision_common.network import is_loopback_host

DEFAULT_MODEL = "synthworld-llava-next"
# SGLang's default port, so clients written for SGLang work unchanged (serving.md §1).
DEFAULT_PORT = 30000
# The default answer length when a request gives neither max_tokens nor max_completion_tokens.
DEFAULT_MAX_TOKENS = 512
# Text characters per request and per message: about 64k tokens of English, above any served model's context,
# and small enough that refusing more costs milliseconds (issue 19).
DEFAULT_MAX_CHARS = 256 * 1024
# Names every request may use for the served model: SGLang's tests send "default" (serving.md §3).
MODEL_ALIASES = ("default",)


class ServerConfigError(ValueError):
    """Contradictory or out-of-range server settings; the message names the option."""


@dataclass(frozen=True)
class ServerConfig:
    """How the OpenAI-compatible server runs. Backend options (URL, device, ...) live in ``backend_options``.

    Concurrency: at most ``max_concurrency`` generations run at once and at most ``max_queue`` more wait;
    a request beyond that is answered 429 at once instead of piling up.
    """

    model: str = DEFAULT_MODEL
    """A preset name, a checkpoint directory or hub id (local backend), or the remote served name."""
    backend: BackendKind = "local"
    backend_options: dict[str, Any] = field(default_factory=dict)
    """Keyword options for ``make_backend`` (the fields of the backend kind's config dataclass)."""
    served_model_name: str | None = None
    """What ``/v1/models`` lists and responses name; default: the model as given."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_concurrency: int = 1
    max_queue: int = 16
    image_root: Path | None = None
    """Clients may name image files (paths or file:// URLs) only inside this folder; None: no paths at all."""
    allow_remote_images: bool = False
    max_pixels: int = 40_000_000
    max_image_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    """Largest request body (a few base64 images plus text); larger ones are refused with 413 unread."""
    max_request_chars: int = DEFAULT_MAX_CHARS
    """Characters of text in all messages of one request; more is refused (400) before anything is tokenized."""
    max_message_chars: int = DEFAULT_MAX_CHARS
    """Characters of text in one message (after merging consecutive messages of one role)."""
    api_key: str | None = None
    """When set, /v1/* needs ``Authorization: Bearer <key>``; /health stays open like SGLang's."""
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    stream_interval_ms: float = 20.0
    """Least time between two streamed chunks; the deltas that arrive meanwhile go out as one chunk. The first
    chunk is never held back. On a fast model each chunk costs a loop wake-up, a loopback send and a client
    parse (about 0.5 CPU ms on 2 cores): sending one per token would cost more than the token. 0 sends every
    batch at once (the role of SGLang's ``--stream-interval``, counted in time rather than tokens)."""
    event_timeout_s: float = 600.0
    """Longest wait for the backend's next event (the first one included, the queue wait not): a safety net
    behind the backends' own timeouts, so a hung backend costs a 504, never a request that waits forever."""

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_KINDS:
            raise ServerConfigError(f"backend must be one of {BACKEND_KINDS}, got {self.backend!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ServerConfigError("model must be a non-empty string")
        if self.served_model_name is not None and not self.served_model_name.strip():
            raise ServerConfigError("served_model_name must not be blank")
        if not self.host:
            raise ServerConfigError("host must not be empty (use 127.0.0.1 for this machine only)")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ServerConfigError(f"port must be in 0..65535 (0 picks a free port), got {self.port!r}")
        for name, low in (
            ("max_concurrency", 1),
            ("max_queue", 0),
            ("default_max_tokens", 1),
            ("max_request_bytes", 1024),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ServerConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        interval = self.stream_interval_ms
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= 1000:
            raise ServerConfigError(f"stream_interval_ms must be a number in 0..1000, got {interval!r}")
        timeout = self.event_timeout_s
        if not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise ServerConfigError(f"event_timeout_s must be a positive number, got {timeout!r}")
        if self.api_key is not None and not self.api_key.strip():
            raise ServerConfigError("api_key must not be blank; leave it unset for an open server")
        if self.image_root is not None:
            root = Path(self.image_root).expanduser()
            if not root.is_dir():
                raise ServerConfigError(f"image_root {self.image_root} is not an existing directory")
            object.__setattr__(self, "image_root", root.resolve())
        # Fails here (naming the field) rather than on the first request.
        try:
            self.image_limits()
        except ValueError as exc:
            raise ServerConfigError(f"image limits: {exc}") from exc
        try:
            self.text_bounds()
        except ValueError as exc:
            raise ServerConfigError(f"text bounds: {exc}") from exc

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    @property
    def loopback_only(self) -> bool:
        """True when the bind address is reachable from this machine only."""
        return is_loopback_host(self.host)

    def image_limits(self) -> ImageLimits:
        """Network clients: data URLs always; server files only under ``image_root``; remote URLs if enabled."""
        return ImageLimits.for_untrusted_requests(
            local_root=self.image_root,
            allow_remote_urls=self.allow_remote_images,
            max_pixels=self.max_pixels,
            max_bytes=self.max_image_bytes,
        )

    def text_bounds(self) -> TextBounds:
        return TextBounds(self.max_request_chars, self.max_message_chars)

    def accepts_model(self, requested: str | None) -> bool:
        """Requests may name the served model, the model as configured, or an alias such as "default"."""
        return requested is None or requested in {self.model_name, self.model, *MODEL_ALIASES}

    @classmethod
    def tiny(cls, **overrides: Any) -> ServerConfig:
        """For tests: a free port, one generation at a time, a short queue, short answers, small images."""
        values: dict[str, Any] = {
            "port": 0,
            "max_concurrency": 1,
            "max_queue": 2,
            "default_max_tokens": 16,
            "max_pixels": 4_000_000,
            "event_timeout_s": 60.0,
        }
        values.update(overrides)
        return cls(**values)
