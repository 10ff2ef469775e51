"""The in-process backend: transformers ``LlavaNextForConditionalGeneration`` behind ``ChatBackend``.

``generate`` runs in a worker thread and streams through ``TextIteratorStreamer`` with a timeout, so an
exception in the thread surfaces as a ``BackendError`` naming the real cause instead of a hang (serving.md
§7). A ``StoppingCriteria`` checks the caller's ``CancelToken``, an internal stop flag (consumer gone, stop
string seen) and stop strings after every token, so Stop takes effect within one decoding step. One lock
serialises requests: a model serves one generation at a time (queueing is the server's job).
"""

from __future__ import annotations

import importlib.util
import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch
from transformers import (
    AutoProcessor,
    BitsAndBytesConfig,
    LlavaNextForConditionalGeneration,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from llava_demo.backends.answer_text import LeadingWhitespaceTrimmer
from llava_demo.backends.base import (
    BackendBase,
    BackendError,
    BackendUnavailable,
    CancelToken,
    FinishReason,
    GenerationTimeout,
    SamplingParams,
    StreamEvent,
    Usage,
    check_conversation,
)
from llava_demo.backends.image_only import needs_image_reply, no_image_events
from llava_demo.backends.images import prepare_images
from llava_demo.backends.local_config import LocalBackendConfig
from llava_demo.backends.local_device import pick_device_and_dtype
from llava_demo.backends.local_prompt import FittedPrompt, ImageTokenCounter, fit_to_context
from llava_demo.backends.stop_strings import StopStringFilter
from llava_demo.presets import PresetError, UnknownModelError, resolve_model
from vision_common.chat.checkpoint_templates import TemplateChoice, choose_template, has_chat_template
from vision_common.chat.conversation import Conversation
from vision_common.chat.templates import TemplateError, UnknownTemplateError

__all__ = ["LocalBackend", "LocalBackendConfig"]

# How often a request waiting for the model lock looks at its CancelToken.
_LOCK_POLL_S = 0.05


class _StopCriteria(StoppingCriteria):
    """Ends generation when cancelled, when the consumer asked (``halt``), or when a stop string appears in
    the generated tokens (decoded with special tokens, so special stop tokens count too)."""

    def __init__(
        self,
        cancel: CancelToken,
        halt: threading.Event,
        tokenizer: Any,
        stops: tuple[str, ...],
        prompt_len: int,
    ) -> None:
        self.cancel, self.halt, self.tokenizer, self.stops = cancel, halt, tokenizer, stops
        self.prompt_len = prompt_len
        # Tokens are at least one byte; a few extra cover stop strings split over partial-byte tokens.
        self.window = max((len(s) for s in stops), default=0) + 4
        self.matched_stop = False

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        done = self.cancel.cancelled or self.halt.is_set()
        generated = input_ids.shape[1] - self.prompt_len
        if not done and self.stops and generated > 0:
            tail = self.tokenizer.decode(
                input_ids[0, -min(generated, self.window) :], skip_special_tokens=False
            )
            if any(stop in tail for stop in self.stops):
                self.matched_stop = done = True
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class LocalBackend(BackendBase):
    """A loaded model + processor and the renderer that writes its prompts. Thread-safe."""

    name = "local"

    def __init__(
        self,
        model: Any,
        processor: Any,
        template: TemplateChoice,
        *,
        model_id: str,
        config: LocalBackendConfig,
        image_only: bool = False,
    ) -> None:
        self._model = model
        self.image_only = image_only  # trained on image turns only: see backends.image_only
        self._processor = processor
        self.template = template
        self._model_id = model_id
        self.config = config
        self._lock = threading.Lock()
        # Fast tokenizers may raise "Already borrowed" when called from several threads at once, so prompt
        # preparation is serialised too (separately: a bad request is refused even while the model is busy).
        self._prepare_lock = threading.Lock()
        text_config = model.config.text_config
        self.context_length = config.context_length or int(text_config.max_position_embeddings)
        self.image_token_id = int(model.config.image_token_id)
        self.counter = ImageTokenCounter.from_processor(processor)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def model(self) -> Any:
        """The loaded ``LlavaNextForConditionalGeneration`` (None once closed)."""
        return self._model

    @property
    def processor(self) -> Any:
        return self._processor

    @classmethod
    def load(cls, model: str, config: LocalBackendConfig | None = None) -> LocalBackend:
        """Load a preset, checkpoint directory or hub id (``BackendUnavailable`` with the cause on failure)."""
        cfg = config or LocalBackendConfig()
        try:
            resolved = resolve_model(model, template=cfg.template)
        except (UnknownModelError, UnknownTemplateError, PresetError) as exc:
            raise BackendUnavailable(f"cannot load {model!r}: {exc}") from exc
        if resolved.backend == "sglang":
            raise BackendUnavailable(
                f"preset {resolved.name!r} ({resolved.checkpoint}) is an original-LLaVA checkpoint that "
                "transformers' LlavaNext cannot load; serve it with the sglang backend"
            )
        try:
            device, dtype = pick_device_and_dtype(
                cfg.device,
                cfg.dtype,
                cuda_available=torch.cuda.is_available(),
                mps_available=torch.backends.mps.is_available(),
            )
        except ValueError as exc:
            raise BackendUnavailable(f"cannot load {model!r}: {exc}") from exc
        load_kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": cfg.local_files_only}
        if cfg.quantization:
            if device.type != "cuda":
                raise BackendUnavailable(
                    f"quantization={cfg.quantization!r} needs a CUDA GPU; this machine has none"
                )
            if importlib.util.find_spec("bitsandbytes") is None:
                raise BackendUnavailable(
                    f"quantization={cfg.quantization!r} needs bitsandbytes: pip install bitsandbytes"
                )
            # Only a BitsAndBytesConfig, never load_in_4bit alongside it (LLaVA #132, #587: they conflict).
            load_kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=cfg.quantization == "4bit",
                load_in_8bit=cfg.quantization == "8bit",
                bnb_4bit_compute_dtype=dtype,
            )
            load_kwargs["device_map"] = {"": device}
        source = resolved.checkpoint
        try:
            processor = AutoProcessor.from_pretrained(source, local_files_only=cfg.local_files_only)
            loaded = LlavaNextForConditionalGeneration.from_pretrained(source, **load_kwargs)
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
            raise BackendUnavailable(
                f"cannot load model {resolved.name!r} from {source}: {type(exc).__name__}: {exc}"
            ) from exc
        if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
            raise BackendUnavailable(
                f"{source}: expected a LLaVA-NeXT processor, got {type(processor).__name__}"
            )
        if not cfg.quantization:
            loaded = loaded.to(device)
        loaded.eval()
        owner = processor if has_chat_template(processor) else processor.tokenizer
        prefer = "builtin" if cfg.template else cfg.prefer_template
        try:
            template = choose_template(resolved, owner, prefer=prefer)
        except TemplateError as exc:
            raise BackendUnavailable(f"cannot serve {resolved.name!r}: {exc}") from exc
        return cls(
            loaded, processor, template, model_id=resolved.name, config=cfg, image_only=resolved.image_only
        )

    # -- the interface ------------------------------------------------------------------------------------

    def stream(
        self,
        conversation: Conversation,
        params: SamplingParams | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[StreamEvent]:
        """Validate, load images and fit the context now (errors raise here, before any event), then return
        the event iterator, which waits for the model lock and generates."""
        if self._model is None:
            raise BackendUnavailable(f"the local backend for {self._model_id} is closed")
        check_conversation(conversation)
        if needs_image_reply(conversation, self.image_only):
            return no_image_events()
        params = params or SamplingParams()
        images = prepare_images(conversation.images, self.config.image_limits)
        with self._prepare_lock:
            fitted = fit_to_context(
                conversation,
                images.images,
                renderer=self.template.renderer,
                processor=self._processor,
                counter=self.counter,
                image_token_id=self.image_token_id,
                context_length=self.context_length,
                max_new_tokens=params.max_new_tokens,
            )
        notices = (*images.notices, *fitted.notices)
        return self._events(fitted, notices, params, cancel or CancelToken())

    def _events(
        self, fitted: FittedPrompt, notices: tuple[str, ...], params: SamplingParams, cancel: CancelToken
    ) -> Iterator[StreamEvent]:
        for notice in notices:
            yield StreamEvent.notice(notice)
        while not self._lock.acquire(timeout=_LOCK_POLL_S):
            if cancel.cancelled:
                yield StreamEvent.done("cancelled", Usage(fitted.prompt_tokens, 0, fitted.image_tokens))
                return
        try:
            yield from self._generate(fitted, params, cancel)
        finally:
            self._lock.release()

    def _generate(
        self, fitted: FittedPrompt, params: SamplingParams, cancel: CancelToken
    ) -> Iterator[StreamEvent]:
        model, tokenizer = self._model, self._processor.tokenizer
        if model is None:
            raise BackendUnavailable(f"the local backend for {self._model_id} was closed")
        stops = tuple(dict.fromkeys((*params.stop, *fitted.rendered.stop_strings)))
        halt = threading.Event()
        criteria = _StopCriteria(cancel, halt, tokenizer, stops, fitted.prompt_tokens)
        streamer = TextIteratorStreamer(
            tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=self.config.token_timeout_s
        )
        inputs = fitted.inputs.to(model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        kwargs = _generation_kwargs(params, fitted.max_new_tokens, tokenizer)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)  # global RNG, but only one generation runs at a time
                with torch.inference_mode():
                    output = model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([criteria]),
                        **kwargs,
                    )
                outcome["completion_tokens"] = int(output.shape[1]) - fitted.prompt_tokens
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer with the real cause
                outcome["error"] = exc
                streamer.end()  # wake the consumer now instead of after the timeout

        worker = threading.Thread(target=run, name=f"generate-{self._model_id}", daemon=True)
        text_filter = StopStringFilter(stops)
        trimmer = LeadingWhitespaceTrimmer()
        worker.start()
        try:
            for chunk in streamer:
                text = trimmer.feed(text_filter.feed(chunk))
                if text:
                    yield StreamEvent.delta(text)
                if text_filter.stopped:
                    halt.set()
                    break
            else:
                tail = trimmer.feed(text_filter.flush())
                if tail:
                    yield StreamEvent.delta(tail)
        except queue.Empty:
            halt.set()
            worker.join()
            raise GenerationTimeout(
                f"{self._model_id}: no output for {self.config.token_timeout_s:g} s; generation was stopped"
            ) from None
        finally:
            # Consumer gone (client disconnected) or finished: stop the thread before releasing the lock.
            halt.set()
            worker.join()
        if "error" in outcome:
            exc = outcome["error"]
            raise BackendError(f"{self._model_id}: generation failed: {type(exc).__name__}: {exc}") from exc
        completion = outcome.get("completion_tokens", 0)
        reason: FinishReason
        if cancel.cancelled:
            reason = "cancelled"
        elif text_filter.stopped or criteria.matched_stop or completion < fitted.max_new_tokens:
            reason = "stop"
        else:
            reason = "length"
        yield StreamEvent.done(reason, Usage(fitted.prompt_tokens, completion, fitted.image_tokens))

    def health(self) -> dict[str, Any]:
        loaded = self._model is not None
        return {
            "backend": self.name,
            "model": self._model_id,
            "status": "ok" if loaded else "closed",
            "device": str(self._model.device) if loaded else None,
            "dtype": str(self._model.dtype).removeprefix("torch.") if loaded else None,
            "busy": self._lock.locked(),
            "context_length": self.context_length,
            "template": self.template.renderer.name,
            "template_source": self.template.source,
        }

    def close(self) -> None:
        with self._lock:  # let a running generation finish first
            on_cuda = self._model is not None and self._model.device.type == "cuda"
            self._model = None
        if on_cuda:
            torch.cuda.empty_cache()


def _generation_kwargs(params: SamplingParams, max_new_tokens: int, tokenizer: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": not params.greedy}
    if not params.greedy:
        kwargs.update(temperature=params.temperature, top_p=params.top_p)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is not None:
        kwargs["pad_token_id"] = pad
    return kwargs
