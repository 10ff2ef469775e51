"""What the chat tab's handlers share across sessions: loaded models, running answers, the feedback log and the
examples. Built once per app (never at import time), passed to the handlers, closed when the app stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from llava_demo.backends.base import ChatBackend, SamplingParams
from llava_demo.presets import PresetError, load_presets
from llava_demo.ui.backend_pool import BackendFactory, BackendPool, ModelUnavailableError
from llava_demo.ui.decoded_uploads import DecodedUploads
from llava_demo.ui.examples import ChatExample, ExamplesError, find_examples_file, load_examples
from llava_demo.ui.feedback import FeedbackLog
from llava_demo.ui.generations import GenerationJob, Outcome, Progress, SessionGenerations
from llava_demo.ui.model_choices import ModelChoice, local_model_choices, served_model_choices
from llava_demo.ui.settings import ChatSettings
from vision_common.chat.conversation import Conversation
from vision_common.images.limits import ImageLimits
from vision_common.zerogpu import gpu_decorator

log = logging.getLogger("llava_demo.ui.chat")


@dataclass
class ChatServices:
    settings: ChatSettings
    pool: BackendPool
    generations: SessionGenerations = field(default_factory=SessionGenerations)
    feedback: FeedbackLog | None = None
    examples: tuple[ChatExample, ...] = ()
    examples_problem: str | None = None
    """Why examples.json could not be used (shown in the tab instead of the examples)."""
    uploads: DecodedUploads = field(init=False)
    """Every uploaded image decoded once, with the app's limits, for validation, the panel and the model."""

    def __post_init__(self) -> None:
        self.uploads = DecodedUploads(self.settings.image_limits())

    @classmethod
    def create(cls, settings: ChatSettings, factory: BackendFactory | None = None) -> ChatServices:
        pool = BackendPool(settings) if factory is None else BackendPool(settings, factory)
        examples: tuple[ChatExample, ...] = ()
        problem = None
        path = settings.examples_file or find_examples_file()
        if path is not None:
            try:
                examples = tuple(load_examples(path))
            except ExamplesError as exc:
                problem = str(exc)
                log.warning("examples not shown: %s", exc)
        feedback = FeedbackLog(settings.feedback_log) if settings.feedback_log else None
        return cls(settings, pool, feedback=feedback, examples=examples, examples_problem=problem)

    @property
    def limits(self) -> ImageLimits:
        return self.settings.image_limits()

    @property
    def local(self) -> bool:
        return self.settings.backend == "local"

    def model_choices(self) -> list[ModelChoice]:
        if not self.local:
            return served_model_choices(self.settings.model, self.settings.backend)
        try:
            presets = load_presets()
        except PresetError as exc:
            log.warning("presets not listed: %s", exc)
            presets = {}
        return local_model_choices(presets, self.settings.checkpoint_roots, self.settings.model)

    def model_problem(self, model: str) -> str | None:
        """Why ``model`` cannot be served, without loading it (None when nothing is known to be wrong)."""
        try:
            self.pool.check(model)
        except ModelUnavailableError as exc:
            return str(exc)
        return None

    def backend(self, model: str, template: str | None = None) -> ChatBackend:
        """The backend for a model chosen in the UI or the API (``ModelUnavailableError`` explains refusals).

        Reachable from the network, the app serves only the models it lists: a typed path or hub id would let
        any visitor load server folders or start multi-gigabyte downloads.
        """
        if not self.settings.loopback_only and model not in {c.value for c in self.model_choices()}:
            raise ModelUnavailableError(
                f"{model!r} is not one of the models this app offers; pick one from the list"
            )
        return self.pool.get(model, template)

    def preload(self) -> None:
        """Load the default model before serving; a failure is logged and shown in the tab, not fatal."""
        if not self.settings.preload:
            return
        try:
            self.pool.get(self.settings.model)
        except ModelUnavailableError as exc:
            log.warning("the default model is not available: %s", exc)

    def answer(
        self, session: str, backend: ChatBackend, conversation: Conversation, params: SamplingParams
    ) -> Iterator[Progress | Outcome]:
        """Generate in a job registered for ``session``: progress while it runs, then the outcome.

        On ZeroGPU this is the function that holds the GPU (``gpu_decorator``).
        """
        return _gpu_answer(self.generations, session, backend, self.uploads.resolve(conversation), params)

    def close(self) -> None:
        self.pool.close()


@gpu_decorator()
def _gpu_answer(
    generations: SessionGenerations,
    session: str,
    backend: ChatBackend,
    conversation: Conversation,
    params: SamplingParams,
) -> Iterator[Progress | Outcome]:
    job = GenerationJob(backend, conversation, params, label=session[:12])
    generations.start(session, job)
    try:
        for progress in job.watch():
            if not progress.done:
                yield progress
    finally:
        if job.outcome is None:
            job.cancel()  # the watcher went away (tab closed, event cancelled): stop the backend too
        generations.finish(session, job)
    outcome = job.outcome
    if outcome is None:  # pragma: no cover - watch() returns only once the job is over
        raise RuntimeError("generation ended without an outcome")
    yield outcome


def session_id(request: Any) -> str:
    """Gradio's per-connection id (a browser tab, or one gradio_client ``Client``); "local" without one."""
    return str(getattr(request, "session_hash", None) or "local")
