"""``make_backend``: one backend of any kind from its name and options, validated against that kind's config.

This module sits above every backend (none imports it), so choosing an implementation creates no cycle.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from llava_demo.backends.base import BACKEND_KINDS, BackendKind, ChatBackend
from llava_demo.backends.local_config import LocalBackendConfig
from llava_demo.backends.openai_compat import OpenAICompatBackend, OpenAICompatConfig
from llava_demo.backends.sglang import SGLangBackend, SGLangBackendConfig


def make_backend(kind: BackendKind, model: str, **options: Any) -> ChatBackend:
    """Build a backend. ``model`` is a preset name, a checkpoint path or id (``local``), or the served model
    name (``sglang`` / ``openai``). ``options`` are the fields of that kind's config dataclass:
    ``LocalBackendConfig``, ``SGLangBackendConfig`` (plus the ``SGLangLaunchConfig`` fields, e.g. ``port``,
    ``tp``, when launching) or ``OpenAICompatConfig``; unknown ones are a ``ValueError``.
    """
    if kind == "local":
        config = _config(LocalBackendConfig, kind, options)
        # The one documented function-local project import: ``local`` imports torch and transformers (~650 MB
        # and seconds on two cores), which a client of a remote server (sglang/openai kinds) must never pay.
        from llava_demo.backends.local import LocalBackend

        return LocalBackend.load(model, config)
    if kind == "sglang":
        return SGLangBackend.start(model, SGLangBackendConfig.from_options(**options))
    if kind == "openai":
        return OpenAICompatBackend(model, _config(OpenAICompatConfig, kind, options))
    raise ValueError(f"backend kind must be one of {BACKEND_KINDS}, got {kind!r}")


def _config(config_type: Any, kind: str, options: dict[str, Any]) -> Any:
    allowed = {f.name for f in fields(config_type)}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"backend {kind!r}: unknown option(s) {unknown}; allowed: {sorted(allowed)}")
    return config_type(**options)
