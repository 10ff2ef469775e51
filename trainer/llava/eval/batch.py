"""Batched greedy answers from the in-process chat backend: one ``generate`` call for many eval questions.

The chat backend answers one conversation at a time (it streams, and a model serves one user at a time),
which costs the eval one prefill and one decoding loop per question. Here a batch of questions becomes one
left-padded ``generate`` call: the processor expands each prompt's ``<image>`` to that image's own AnyRes
token count and pads the tiles of all images to the largest grid (``image_sizes`` says which tiles are real;
LlavaNext drops the padding before the vision tower), and the attention mask hides the left padding, whose
positions start after it. Each row is then cut exactly where the backend's streaming loop would have stopped
(its cap, an end-of-sequence token, a stop string in the last few tokens) and decoded the same way, so the
answers are the ones ``BackendAnswerer`` gets one at a time; ``tests/test_eval_batch.py`` checks the tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from llava_demo.backends.base import BackendError, check_conversation
from llava_demo.backends.images import prepare_images
from llava_demo.backends.local import LocalBackend
from llava_demo.backends.local_prompt import check_no_image_markers, render_prompt
from llava_demo.backends.stop_strings import find_stop
from trainer.llava.eval.run import AnswerError, Question
from vision_common.chat.conversation import DEFAULT_IMAGE_TOKEN, Conversation


@dataclass(frozen=True)
class PreparedQuestion:
    """One question rendered as the backend renders it: prompt text, decoded image, stop strings."""

    text: str
    image: Any  # PIL.Image.Image after the backend's image limits
    stops: tuple[str, ...]
    max_new_tokens: int
    where: str


def cut_generated(
    new_ids: Sequence[int],
    *,
    budget: int,
    eos_ids: Iterable[int],
    stops: Sequence[str],
    tokenizer: Any,
) -> list[int]:
    """The generated tokens a single-question ``generate`` would have produced: at most ``budget``, up to and
    including the first end-of-sequence token, or up to the token whose arrival puts a stop string into the
    last ``len(stop) + 4`` tokens decoded with special tokens (the backend's ``_StopCriteria`` rule)."""
    ids = [int(token) for token in new_ids[:budget]]
    eos = set(eos_ids)
    window = max((len(stop) for stop in stops), default=0) + 4
    for end in range(1, len(ids) + 1):
        if ids[end - 1] in eos:
            return ids[:end]
        if stops:
            tail = tokenizer.decode(ids[max(0, end - window) : end], skip_special_tokens=False)
            if any(stop in tail for stop in stops):
                return ids[:end]
    return ids


def answer_text(ids: Sequence[int], stops: Sequence[str], tokenizer: Any) -> str:
    """What ``BackendAnswerer`` returns for these tokens: decoded without special tokens, cut before the first
    stop string (the backend's ``StopStringFilter``), stripped."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    cut = find_stop(text, stops)
    return (text if cut < 0 else text[:cut]).strip()


def _eos_ids(model: Any) -> tuple[int, ...]:
    eos = model.generation_config.eos_token_id
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, (list, tuple)) else (int(eos),)


class BatchedLocalAnswerer:
    """``Answerer`` + ``BatchAnswerer`` over a loaded ``LocalBackend``: greedy, one ``generate`` per batch.

    Uses the backend's model, processor, renderer, image limits and context length, so prompts are the ones
    the chat backend builds. Not for use beside a serving backend: it does not take the backend's model lock.
    """

    def __init__(self, backend: LocalBackend) -> None:
        if backend.model is None:
            raise ValueError(f"the local backend for {backend.model_id} is closed")
        self.backend = backend

    @property
    def model(self) -> Any:
        return self.backend.model

    @property
    def processor(self) -> Any:
        return self.backend.processor

    def answer(self, image: Any, prompt: str, max_new_tokens: int) -> str:
        return self.answer_batch([Question(image, prompt, max_new_tokens)])[0]

    def answer_batch(self, questions: Sequence[Question]) -> list[str]:
        prepared = [self.prepare(question) for question in questions]
        tokenizer = self.processor.tokenizer
        ids = self.generate_ids(prepared)
        return [answer_text(row, p.stops, tokenizer) for row, p in zip(ids, prepared)]

    def prepare(self, question: Question) -> PreparedQuestion:
        """Render and check one question as ``LocalBackend.stream`` does (errors name the question)."""
        where = question.where or "a question"
        conversation = Conversation().with_user(question.prompt, images=(question.image,))
        try:
            check_conversation(conversation)
            images = prepare_images(conversation.images, self.backend.config.image_limits)
            check_no_image_markers(
                conversation, getattr(self.processor, "image_token", None) or DEFAULT_IMAGE_TOKEN
            )
            rendered = render_prompt(self.backend.template.renderer, conversation)
        except BackendError as exc:
            raise AnswerError(f"{where}: {type(exc).__name__}: {exc}") from exc
        return PreparedQuestion(
            text=rendered.text,
            image=images.images[0].image,
            stops=tuple(dict.fromkeys(rendered.stop_strings)),
            max_new_tokens=question.max_new_tokens,
            where=where,
        )

    @torch.inference_mode()
    def generate_ids(self, prepared: Sequence[PreparedQuestion]) -> list[list[int]]:
        """Each question's generated token ids (cut as the backend cuts them), from one ``generate`` call."""
        if not prepared:
            return []
        model, tokenizer = self.model, self.processor.tokenizer
        try:
            inputs = self.processor(
                text=[p.text for p in prepared],
                images=[p.image for p in prepared],
                return_tensors="pt",
                padding=True,
                padding_side="left",  # generation appends on the right, so every prompt must end there
            )
        except (ValueError, TypeError, RuntimeError) as exc:
            raise AnswerError(
                f"{prepared[0].where} (batch of {len(prepared)}): the processor could not encode the prompts: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        lengths = inputs["attention_mask"].sum(dim=1).tolist()  # [B] real prompt tokens per row
        budgets = []
        for p, length in zip(prepared, lengths):
            room = self.backend.context_length - int(length)
            if room < 1:
                raise AnswerError(
                    f"{p.where}: ContextOverflowError: the prompt needs {int(length)} tokens but the model's "
                    f"context holds {self.backend.context_length}"
                )
            budgets.append(min(p.max_new_tokens, room))  # the backend lowers the cap the same way
        inputs = inputs.to(model.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        try:
            output = model.generate(**inputs, max_new_tokens=max(budgets), do_sample=False, pad_token_id=pad)
        except RuntimeError as exc:
            raise AnswerError(
                f"{prepared[0].where} (batch of {len(prepared)}): generation failed: {type(exc).__name__}: {exc}"
            ) from exc
        new = output[:, inputs["input_ids"].shape[1] :].tolist()  # [B, T] after the padded prompt
        eos = _eos_ids(model)
        return [
            cut_generated(row, budget=budget, eos_ids=eos, stops=p.stops, tokenizer=tokenizer)
            for row, budget, p in zip(new, budgets, prepared)
        ]
