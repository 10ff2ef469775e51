"""Loaded backends, shared by every session: models load once, lazily, and the least recently used one is
closed when users switch between more models than ``max_loaded_models``.

Models belong to the process, not to a session (gradio.md §7): sessions only name the model they want. A load
failure is a ``ModelUnavailableError`` whose message says what is missing and how to fix it (the embedded model
not built yet, a folder without ``config.json``, an unreachable server), shown inline in the chat.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llava_demo.backends.base import BackendError, ChatBackend
from llava_demo.backends.factory import make_backend
from llava_demo.presets import PresetError, UnknownModelError, resolve_model
from llava_demo.server.cli import StartupError, check_local_model
from llava_demo.ui.hub_cache import HubProblem, current_hub_problem, one_sentence
from llava_demo.ui.paced_backend import PacedBackend
from llava_demo.ui.settings import ChatSettings

log = logging.getLogger("llava_demo.ui.backend_pool")
BackendFactory = Callable[..., ChatBackend]
PoolKey = tuple[str, str | None]


class ModelUnavailableError(RuntimeError):
    """A model cannot be served; ``str(err)`` is the user-facing reason."""


class BackendPool:
    """Thread-safe cache of backends keyed by (model, template override)."""

    def __init__(
        self,
        settings: ChatSettings,
        factory: BackendFactory = make_backend,
        hub_problem: HubProblem = current_hub_problem,
    ) -> None:
        self.settings = settings
        self._factory = factory
        self._hub_problem = hub_problem
        self._lock = threading.Lock()
        # One load at a time: two models loading at once on a small machine only slows both.
        self._load_lock = threading.Lock()
        self._loaded: OrderedDict[PoolKey, ChatBackend] = OrderedDict()

    def check(self, model: str) -> None:
        """Raise ``ModelUnavailableError`` when a local model's files are missing (cheap; loads nothing)."""
        if self.settings.backend != "local":
            return
        try:
            check_local_model(model)
            resolved = resolve_model(model)
        except (StartupError, UnknownModelError, PresetError) as exc:
            raise ModelUnavailableError(str(exc)) from exc
        if resolved.source == "hub":
            problem = self._hub_problem(resolved.checkpoint)
            if problem:
                raise ModelUnavailableError(problem)

    def get(self, model: str, template: str | None = None) -> ChatBackend:
        """The backend for ``model`` (loading it if needed); ``template`` overrides the chat template."""
        if not model or not model.strip():
            raise ModelUnavailableError("no model is selected")
        if template and self.settings.backend != "local":
            raise ModelUnavailableError(
                f"a template override needs the local backend; the {self.settings.backend} server renders "
                "prompts with its own template"
            )
        key: PoolKey = (model, template or None)
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._load_lock:
            cached = self._cached(key)  # another session may have loaded it while this one waited
            if cached is not None:
                return cached
            backend = self._load(model, template)
            with self._lock:
                self._loaded[key] = backend
                evicted = []
                while len(self._loaded) > self.settings.max_loaded_models:
                    evicted.append(self._loaded.popitem(last=False))
        for old_key, old in evicted:
            log.info("closing model %s (least recently used)", old_key[0])
            # close() waits for a running answer to end; don't make this session wait for it.
            threading.Thread(target=old.close, name=f"close-{old_key[0]}", daemon=True).start()
        return backend

    def _cached(self, key: PoolKey) -> ChatBackend | None:
        with self._lock:
            backend = self._loaded.get(key)
            if backend is not None:
                self._loaded.move_to_end(key)
            return backend

    def _load(self, model: str, template: str | None) -> ChatBackend:
        self.check(model)
        options: dict[str, Any] = self.settings.backend_options()
        if template:
            options["template"] = template
        log.info(
            "loading model %s (%s backend%s)",
            model,
            self.settings.backend,
            f", template {template}" if template else "",
        )
        try:
            backend = self._factory(self.settings.backend, model, **options)
        except (BackendError, ValueError) as exc:
            raise ModelUnavailableError(
                f"cannot load {model!r} ({self.settings.backend} backend): {exc}"
            ) from exc
        except (OSError, ImportError, RuntimeError) as exc:  # transformers' hub/file errors: many lines each
            log.warning("loading %s failed", model, exc_info=exc)
            raise ModelUnavailableError(one_sentence(model, exc)) from exc
        if self.settings.stream_delay_ms:
            backend = PacedBackend(backend, self.settings.stream_delay_ms / 1000)
        return backend

    def loaded_models(self) -> list[PoolKey]:
        with self._lock:
            return list(self._loaded)

    def close(self) -> None:
        with self._lock:
            backends = list(self._loaded.values())
            self._loaded.clear()
        for backend in backends:
            backend.close()
