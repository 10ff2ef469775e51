"""Running a chat model over the SynthWorld eval sets and a detailed-description probe.

The runner talks to an ``Answerer`` (one image + one prompt -> one answer), so tests drive it with a fake
whose answers are known and any chat backend plugs in through ``BackendAnswerer``. Decoding is greedy
(temperature 0) and short: the eval prompts ask for a word, a phrase or a letter, so 16 new tokens is plenty
and keeps a CPU run inside its time budget. The backend interface answers one conversation at a time; an
answerer that can batch adds ``answer_batch`` (``eval_batch.BatchedLocalAnswerer``: one ``generate`` per
batch), which the runner calls with batches of similar image sizes so that little is padding. With a
``LossModel`` the runner also measures ``image_use`` (``eval_image_use``) on vqa and pope questions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image
from tqdm import tqdm

from llava_demo.backends import BackendError, ChatBackend, SamplingParams
from trainer.data_engine.instructions import DETAIL_INSTRUCTIONS
from trainer.llava.eval.data import (
    EVAL_SET_NAMES,
    SPLITS,
    EvalItem,
    EvalSetName,
    Split,
    distinct_images,
    load_eval_sets,
    open_eval_image,
    select_items,
)
from trainer.llava.eval.image_use import LossModel, measure_eval_image_use
from trainer.llava.eval.report import build_report
from vision_common.chat import format_prompts
from vision_common.chat.conversation import Conversation

# A description must be able to reach the 15 words issue 4 asks of it; tokens are at most one word each.
MIN_DESCRIPTION_TOKENS = 16


@dataclass(frozen=True)
class Question:
    image: Image.Image
    prompt: str
    max_new_tokens: int
    where: str = ""  # names the question in errors, e.g. "vqa question 12"


class AnswerError(RuntimeError):
    """The model could not answer a question; the message names the question and the backend's reason."""


class Answerer(Protocol):
    def answer(self, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
        """The model's answer text (greedy) to ``prompt`` about ``image``."""
        ...


@runtime_checkable
class BatchAnswerer(Protocol):
    def answer_batch(self, questions: Sequence[Question]) -> list[str]: ...


class BackendAnswerer:
    """Adapter from the project's chat backends: one single-turn conversation per question, greedy."""

    def __init__(self, backend: ChatBackend) -> None:
        self.backend = backend

    def answer(self, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
        conversation = Conversation().with_user(prompt, images=(image,))
        params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
        try:
            return self.backend.complete(conversation, params).text.strip()
        except BackendError as exc:
            raise AnswerError(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. Presets:

    * ``tiny()``: 4 questions per set, 1 description, 8 new tokens, 2 image-use records per set: seconds on a
      tiny random model (tests).
    * ``quick()``: the CLI default: 300 questions per set (every one where a set has fewer), 4 descriptions,
      image use on 64 vqa + 64 pope questions; sized so the embedded model, answering in batches of 32,
      finishes in under 3 minutes on 2 CPU cores (docs/eval.md has the measured time).
    * ``full()``: every question of every set.
    """

    sets: tuple[EvalSetName, ...] = EVAL_SET_NAMES
    split: Split = "test"
    limit: int | None = None  # questions per set; None = all
    short_max_new_tokens: int = 16
    description_images: int = 4  # detailed-description probes (0 = skip)
    description_max_new_tokens: int = 96
    description_prompt: str = DETAIL_INSTRUCTIONS[0]
    batch_size: int = 32  # questions per ``answer_batch`` call (answerers that have it)
    image_use_records: int = 0  # questions per set (vqa, pope) for ``image_use``; 0 skips it
    image_use_batch_size: int = 16

    def __post_init__(self) -> None:
        object.__setattr__(self, "sets", tuple(self.sets))
        if not self.sets:
            raise ValueError("EvalConfig.sets must name at least one eval set")
        unknown = [name for name in self.sets if name not in EVAL_SET_NAMES]
        if unknown or len(set(self.sets)) != len(self.sets):
            raise ValueError(f"EvalConfig.sets must be distinct names from {EVAL_SET_NAMES}, got {self.sets}")
        if self.split not in SPLITS:
            raise ValueError(f"EvalConfig.split must be one of {SPLITS}, got {self.split!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise ValueError(f"EvalConfig.limit must be a positive integer or None, got {self.limit!r}")
        for name in (
            "short_max_new_tokens",
            "description_max_new_tokens",
            "batch_size",
            "image_use_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.image_use_records < 0:
            raise ValueError(f"EvalConfig.image_use_records must be >= 0, got {self.image_use_records}")
        if self.description_images < 0:
            raise ValueError(f"EvalConfig.description_images must be >= 0, got {self.description_images}")
        if self.description_images:
            if self.description_max_new_tokens < MIN_DESCRIPTION_TOKENS:
                raise ValueError(
                    f"EvalConfig.description_max_new_tokens={self.description_max_new_tokens} cannot hold a "
                    f"detailed description; use >= {MIN_DESCRIPTION_TOKENS} or description_images=0"
                )
            if not self.description_prompt.strip():
                raise ValueError("EvalConfig.description_prompt is empty but description_images > 0")
            if format_prompts.SHORT_ANSWER in self.description_prompt:
                raise ValueError("EvalConfig.description_prompt asks for a detailed answer AND a short one")

    @classmethod
    def tiny(cls, **overrides: Any) -> EvalConfig:
        values: dict[str, Any] = {
            "limit": 4,
            "short_max_new_tokens": 8,
            "description_images": 1,
            "description_max_new_tokens": MIN_DESCRIPTION_TOKENS,
            "batch_size": 4,
            "image_use_records": 2,
        }
        return cls(**{**values, **overrides})

    @classmethod
    def quick(cls, **overrides: Any) -> EvalConfig:
        values: dict[str, Any] = {"limit": 300, "description_images": 4, **overrides}
        if "image_use_records" not in overrides:
            # 64 per set, fewer when --limit asks for a smaller run (a reduced recipe's eval stays seconds).
            values["image_use_records"] = min(64, values["limit"] or 64)
        return cls(**values)

    @classmethod
    def full(cls, **overrides: Any) -> EvalConfig:
        return cls(**{"limit": None, "description_images": 8, "image_use_records": 300, **overrides})

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["sets"] = list(self.sets)
        return values


def answer_questions(
    answerer: Answerer,
    questions: Sequence[Question],
    *,
    batch_size: int = 8,
    desc: str = "",
    progress: bool = True,
) -> list[str]:
    """Answers in question order; batched when the answerer supports it.

    A batch answerer decodes greedily, so a question asked twice (POPE asks the same positive probe in each of
    its three categories) is answered once. Batches hold questions of similar image area and prompt length (a
    stable sort, undone afterwards): a batch is padded to its longest prompt and its largest AnyRes grid, so
    mixing sizes wastes compute.
    """
    answers: list[str] = []
    with tqdm(total=len(questions), desc=desc, unit="q", disable=not progress, leave=False) as bar:
        if isinstance(answerer, BatchAnswerer):
            first: dict[tuple[str, str, int], int] = {}  # question key -> index of its first occurrence
            keys = [_question_key(question) for question in questions]
            for index, key in enumerate(keys):
                first.setdefault(key, index)
            order = sorted(first.values(), key=lambda i: _padding_key(questions[i]))
            bar.reset(total=len(order))
            by_index: dict[int, str] = {}
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = answerer.answer_batch([questions[i] for i in chunk])
                if len(batch) != len(chunk):
                    raise RuntimeError(
                        f"answer_batch returned {len(batch)} answers for {len(chunk)} questions"
                    )
                by_index.update(zip(chunk, batch))
                bar.update(len(chunk))
            answers = [by_index[first[key]] for key in keys]
        else:
            for question in questions:
                try:
                    answers.append(answerer.answer(question.image, question.prompt, question.max_new_tokens))
                except AnswerError as exc:
                    raise AnswerError(f"{question.where or 'a question'}: {exc}") from exc
                bar.update(1)
    return answers


def _question_key(question: Question) -> tuple[str, str, int]:
    pixels = hashlib.sha1(question.image.tobytes(), usedforsecurity=False).hexdigest()
    return (f"{question.image.mode}{question.image.size}{pixels}", question.prompt, question.max_new_tokens)


def _padding_key(question: Question) -> tuple[int, int]:
    width, height = question.image.size
    return (width * height, len(question.prompt))


class _LastImage:
    """Eval items come grouped by image; keeping the last one decoded avoids re-reading the same PNG."""

    def __init__(self, world: Path) -> None:
        self.world = world
        self.key: str | None = None
        self.image: Image.Image | None = None

    def get(self, relative: str, where: str) -> Image.Image:
        if relative != self.key:
            self.image, self.key = open_eval_image(self.world, relative, where), relative
        assert self.image is not None
        return self.image


@dataclass(frozen=True)
class EvalResult:
    """The JSON report, plus every question with the model's answer (for a predictions file)."""

    report: dict[str, Any]
    predictions: list[dict[str, Any]]


def run_eval(
    answerer: Answerer,
    world: str | Path,
    config: EvalConfig,
    *,
    progress: bool = True,
    loss_model: LossModel | None = None,
) -> EvalResult:
    """Answer the selected questions of each set and the description probes, then score them. With
    ``loss_model`` and ``config.image_use_records``, also measure ``image_use`` on questions of the vqa and
    pope sets spread over their scenes (otherwise the report's ``image_use`` is null)."""
    root = Path(world)
    started = time.perf_counter()
    all_items = load_eval_sets(root, config.split, config.sets)
    chosen = {name: select_items(all_items[name], config.limit) for name in config.sets}
    images = _LastImage(root)
    answers: dict[EvalSetName, list[str]] = {}
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}  # CPU time of all threads: steadier than wall time on a shared machine
    for name, items in chosen.items():
        set_start, cpu_start = time.perf_counter(), time.process_time()
        questions = [
            Question(images.get(i.image, i.where), i.text, config.short_max_new_tokens, i.where)
            for i in items
        ]
        answers[name] = answer_questions(
            answerer, questions, batch_size=config.batch_size, desc=name, progress=progress
        )
        seconds[name] = time.perf_counter() - set_start
        cpu_seconds[name] = time.process_time() - cpu_start
    probe_items = [item for items in all_items.values() for item in items]
    probe_images = (
        distinct_images(probe_items, config.description_images) if config.description_images else []
    )
    set_start, cpu_start = time.perf_counter(), time.process_time()
    probes = [
        Question(
            images.get(path, f"description probe {path}"),
            config.description_prompt,
            config.description_max_new_tokens,
            f"description probe {path}",
        )
        for path in probe_images
    ]
    descriptions = answer_questions(
        answerer, probes, batch_size=config.batch_size, desc="describe", progress=progress
    )
    seconds["description"] = time.perf_counter() - set_start
    cpu_seconds["description"] = time.process_time() - cpu_start
    report, correct = build_report(chosen, answers, descriptions)
    report["descriptions"] = [
        {"image": path, "answer": text} for path, text in zip(probe_images, descriptions)
    ]
    report["image_use"] = None
    if loss_model is not None and config.image_use_records:
        set_start, cpu_start = time.perf_counter(), time.process_time()
        report["image_use"] = measure_eval_image_use(
            loss_model,
            root,
            all_items,  # every question of the set, not only the --limit subset: more scenes to swap
            config.image_use_records,
            batch_size=config.image_use_batch_size,
            held_out=config.split == "test",
            progress=progress,
        )
        seconds["image_use"] = time.perf_counter() - set_start
        cpu_seconds["image_use"] = time.process_time() - cpu_start
    report["world"] = str(root)
    report["split"] = config.split
    report["config"] = config.to_json()
    report["seconds_by_set"] = seconds
    report["cpu_seconds_by_set"] = cpu_seconds
    report["seconds"] = time.perf_counter() - started
    predictions = [
        _prediction_record(item, answer, flag)
        for name in chosen
        for item, answer, flag in zip(chosen[name], answers[name], correct[name])
    ]
    return EvalResult(report=report, predictions=predictions)


def _prediction_record(item: EvalItem, answer: str, correct: bool) -> dict[str, Any]:
    return {
        "set": item.set_name,
        "question_id": item.question_id,
        "category": item.category,
        "image": item.image,
        "answer": item.answer,
        "prediction": answer,
        "correct": correct,
    }
