"""Device and dtype choice for the in-process backend, as a pure function of what the machine offers.

"auto" picks CUDA with bfloat16, then Apple MPS with float16 (MPS bfloat16 support is patchy), then the CPU
with float32 (half precision on CPUs is slow and, for LLaVA's CLIP tower, inaccurate).
"""

from __future__ import annotations

import re
from typing import Literal

import torch

Quantization = Literal["4bit", "8bit"]
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
AUTO_DTYPE: dict[str, torch.dtype] = {"cuda": torch.bfloat16, "mps": torch.float16, "cpu": torch.float32}
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def pick_device_and_dtype(
    device: str, dtype: str, *, cuda_available: bool, mps_available: bool
) -> tuple[torch.device, torch.dtype]:
    """Resolve ``device`` ("auto", "cpu", "cuda", "cuda:N", "mps") and ``dtype`` ("auto" or a name in
    ``DTYPES``); raise ``ValueError`` for unknown names or a device this machine does not have."""
    if not isinstance(device, str) or not _DEVICE_PATTERN.fullmatch(device):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype!r}")
    if device == "auto":
        device = "cuda" if cuda_available else "mps" if mps_available else "cpu"
    if device.startswith("cuda") and not cuda_available:
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if device == "mps" and not mps_available:
        raise ValueError("device 'mps' requested but Apple MPS is not available on this machine")
    chosen = torch.device(device)
    return chosen, AUTO_DTYPE[chosen.type] if dtype == "auto" else DTYPES[dtype]
