"""Options of the in-process backend, validated when built; ``tiny`` is the preset for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from llava_demo.backends.local_device import Quantization, pick_device_and_dtype
from vision_common.chat.templates import UnknownTemplateError, get_template
from vision_common.images.load import ImageLimits


@dataclass(frozen=True)
class LocalBackendConfig:
    """How to load and run the model in-process."""

    device: str = "auto"
    """"auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps"."""
    dtype: str = "auto"
    """"auto" (cuda bfloat16, mps float16, cpu float32), "float32", "bfloat16" or "float16"."""
    quantization: Quantization | None = None
    """"4bit" / "8bit" via one bitsandbytes ``BitsAndBytesConfig``: CUDA only (GPU-only, untested here)."""
    template: str | None = None
    """A builtin template name that overrides the preset's and the checkpoint's chat template."""
    prefer_template: Literal["checkpoint", "builtin"] = "checkpoint"
    context_length: int | None = None
    """Tokens the model may see (prompt + answer); default: the text config's max_position_embeddings."""
    token_timeout_s: float = 60.0
    """Longest wait for the next streamed text chunk before ``GenerationTimeout``."""
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    local_files_only: bool = False
    """Never contact the hub (also implied by HF_HUB_OFFLINE=1)."""

    def __post_init__(self) -> None:
        if self.quantization not in (None, "4bit", "8bit"):
            raise ValueError(
                f"LocalBackendConfig.quantization must be None, '4bit' or '8bit', got {self.quantization!r}"
            )
        if self.quantization and (self.device == "cpu" or self.device == "mps"):
            raise ValueError(
                f"LocalBackendConfig: quantization={self.quantization!r} needs CUDA (bitsandbytes), but "
                f"device={self.device!r}"
            )
        if self.quantization and self.dtype == "float32":
            raise ValueError("LocalBackendConfig: quantized weights compute in bfloat16/float16, not float32")
        # Validates device and dtype names (availability is checked at load time).
        pick_device_and_dtype(self.device, self.dtype, cuda_available=True, mps_available=True)
        if self.template is not None:
            try:
                get_template(self.template)
            except UnknownTemplateError as exc:
                raise ValueError(f"LocalBackendConfig.template: {exc}") from exc
        if self.prefer_template not in ("checkpoint", "builtin"):
            raise ValueError("LocalBackendConfig.prefer_template must be 'checkpoint' or 'builtin'")
        if self.context_length is not None and (
            isinstance(self.context_length, bool)
            or not isinstance(self.context_length, int)
            or self.context_length < 2
        ):
            raise ValueError(
                f"LocalBackendConfig.context_length must be an integer >= 2, got {self.context_length!r}"
            )
        if not isinstance(self.token_timeout_s, (int, float)) or not 0 < self.token_timeout_s < float("inf"):
            raise ValueError(
                f"LocalBackendConfig.token_timeout_s must be a positive number, got {self.token_timeout_s!r}"
            )
        if not isinstance(self.image_limits, ImageLimits):
            raise ValueError("LocalBackendConfig.image_limits must be an ImageLimits")

    @classmethod
    def tiny(cls, **overrides: Any) -> LocalBackendConfig:
        """CPU, offline, short timeout, small image caps: for tests with in-process tiny models (seconds)."""
        values: dict[str, Any] = {
            "device": "cpu",
            "local_files_only": True,
            "token_timeout_s": 10.0,
            "image_limits": ImageLimits.tiny(),
        }
        values.update(overrides)
        return cls(**values)
