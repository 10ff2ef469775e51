"""Hugging Face ZeroGPU support: ``@spaces.GPU`` on the functions that generate, when ``spaces`` is installed.

Off Spaces ``spaces`` is normally absent and the decorator is the identity; where it is installed but the
Space has no ZeroGPU hardware, ``spaces.GPU`` is itself a no-op (it checks ``SPACES_ZERO_GPU``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
# Seconds of GPU time one request may hold (spaces' default is 60; an answer of 512 tokens fits easily).
GPU_DURATION_S = 60


def gpu_decorator(duration_s: int = GPU_DURATION_S) -> Callable[[F], F]:
    """``spaces.GPU(duration=duration_s)`` when the ``spaces`` package imports, otherwise the identity."""
    try:
        spaces = importlib.import_module("spaces")
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration_s)
