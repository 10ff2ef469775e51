"""The ``sglang`` backend: attach to an SGLang server or router by URL, or launch one for a preset; then talk
to it through the OpenAI-compatible client (``openai_compat``), the same code the ``openai`` kind uses.

SGLang serves the original-LLaVA and lmms-lab checkpoints (``LlavaLlamaForCausalLM`` and friends); the
llava-hf ``LlavaNextForConditionalGeneration`` ones are not native there and belong to the local backend
(serving.md §2), which ``build_launch_argv`` says when asked to launch one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from llava_demo.backends.base import BackendBase, BackendUnavailable, CancelToken, SamplingParams, StreamEvent
from llava_demo.backends.openai_compat import OpenAICompatBackend, OpenAICompatConfig
from llava_demo.backends.sglang_launch import SGLangLaunchConfig, SGLangServer
from llava_demo.presets import PresetError, UnknownModelError, resolve_model
from vision_common.chat.conversation import Conversation
from vision_common.chat.templates import UnknownTemplateError
from vision_common.images.load import ImageLimits

# SGLang does not validate the request's model name; its own tests send "default".
DEFAULT_SERVED_NAME = "default"


@dataclass(frozen=True)
class SGLangBackendConfig:
    """``url`` set: attach to that server or router. ``url`` None: launch with ``launch``."""

    url: str | None = None
    api_key: str | None = None
    """Sent as a bearer token; when launching, also passed to SGLang as ``--api-key``."""
    launch: SGLangLaunchConfig = field(default_factory=SGLangLaunchConfig)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    """SGLang answers the first chunk only after prefill; large AnyRes prompts on a busy server take a while."""
    image_format: Literal["PNG", "JPEG", "WEBP"] = "PNG"
    image_limits: ImageLimits = field(default_factory=ImageLimits)

    def __post_init__(self) -> None:
        if self.url is not None and self.launch != SGLangLaunchConfig():
            raise ValueError(
                "SGLangBackendConfig: url attaches to a running server, so launch options would be ignored; "
                "set one or the other"
            )
        if not isinstance(self.launch, SGLangLaunchConfig):
            raise ValueError("SGLangBackendConfig.launch must be an SGLangLaunchConfig")
        for name in ("connect_timeout_s", "read_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"SGLangBackendConfig.{name} must be a positive number, got {value!r}")

    @classmethod
    def from_options(cls, **options: Any) -> SGLangBackendConfig:
        """Build from flat keyword options: this class's fields, plus ``SGLangLaunchConfig`` fields (``port``,
        ``tp``, ...) gathered into ``launch``; anything else is a ``ValueError`` listing what is allowed."""
        own = {f.name for f in fields(cls)}
        launch_fields = {f.name for f in fields(SGLangLaunchConfig)}
        unknown = sorted(set(options) - own - launch_fields)
        if unknown:
            raise ValueError(
                f"backend 'sglang': unknown option(s) {unknown}; allowed: {sorted(own | launch_fields)}"
            )
        launch_options = {k: v for k, v in options.items() if k in launch_fields}
        values = {k: v for k, v in options.items() if k in own}
        if launch_options:
            if "launch" in values:
                raise ValueError(
                    "backend 'sglang': pass launch options either flat or as launch=..., not both"
                )
            values["launch"] = SGLangLaunchConfig(**launch_options)
        return cls(**values)

    def client_config(self, base_url: str) -> OpenAICompatConfig:
        return OpenAICompatConfig(
            base_url=base_url,
            api_key=self.api_key,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            image_format=self.image_format,
            image_limits=self.image_limits,
            multi_image_modalities=True,  # SGLang's LLaVA needs it on every part when there are several
        )


class SGLangBackend(BackendBase):
    """An OpenAI-compatible client bound to an SGLang server, plus the server when we launched it."""

    name = "sglang"

    def __init__(
        self, model_id: str, client: OpenAICompatBackend, server: SGLangServer | None = None
    ) -> None:
        self._model_id = model_id
        self.client = client
        self.server = server

    @property
    def model_id(self) -> str:
        return self._model_id

    @classmethod
    def start(cls, model: str, config: SGLangBackendConfig | None = None) -> SGLangBackend:
        """Attach (``config.url``) or launch SGLang for ``model`` (a preset name, path or hub id)."""
        cfg = config or SGLangBackendConfig()
        served = cfg.launch.served_model_name or DEFAULT_SERVED_NAME
        if cfg.url is not None:
            client = OpenAICompatBackend(served, cfg.client_config(cfg.url))
            return cls(model, client)
        try:
            resolved = resolve_model(model)
        except (UnknownModelError, UnknownTemplateError, PresetError) as exc:
            raise BackendUnavailable(f"cannot launch SGLang for {model!r}: {exc}") from exc
        try:
            server = SGLangServer.start(resolved, cfg.launch, api_key=cfg.api_key)
        except ValueError as exc:
            raise BackendUnavailable(f"cannot launch SGLang: {exc}") from exc
        client = OpenAICompatBackend(served, cfg.client_config(server.base_url))
        return cls(resolved.name, client, server)

    def stream(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        if self.server is not None and not self.server.alive:
            raise BackendUnavailable(
                f"the SGLang server we launched for {self._model_id} has exited (code "
                f"{self.server.process.poll()}); its last output:\n{self.server.tail_text()}"
            )
        return self.client.stream(conversation, params, cancel)

    def health(self) -> dict[str, Any]:
        report = {**self.client.health(), "backend": self.name, "model": self._model_id}
        if self.server is None:
            return {**report, "server": "attached"}
        server = self.server.health()
        status = report["status"] if server["alive"] else "exited"
        return {**report, "status": status, "server": "launched", "process": server}

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.close()
