"""The eval's ``image_use`` object: does the model's answer loss on the eval questions depend on the image?

The eval questions become single-turn LLaVA records (the prompt with its format instruction, the reference
answer as the supervised reply), and ``trainer.probes.image_use`` measures the answer loss per supervised token
with each record's own image, a blank image and another scene's image. On the test split these are held-out
scenes the model never trained on. ``gap_other`` and ``gap_blank`` are the losses with the wrong image minus
with the right one, in nats per answer token: near zero means the answers come from the text prior.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.data_engine.schema import IMAGE_TAG
from trainer.llava.data import validate_all
from trainer.llava.eval.answer_loss import ImageUseReport, image_use_of_records
from trainer.llava.eval.data import EvalDataError, EvalItem, EvalSetName, evenly_spaced

# The sets whose references are natural supervised replies (short answers and yes/no); the description
# probes have no reference, and multiple choice supervises a lone letter.
IMAGE_USE_SETS: tuple[EvalSetName, ...] = ("vqa", "pope")


@dataclass(frozen=True)
class LossModel:
    """A loaded LlavaNext model with its processor and the builtin template it was trained with."""

    model: Any
    processor: Any
    template: str


def training_template(model_dir: str | Path, fallback: str | None) -> str | None:
    """The template the model was trained with (``llava_trainer.json``, written by the trainer's export), else
    ``fallback`` (the builtin template the chat backend chose, when it chose one)."""
    record = Path(model_dir) / "llava_trainer.json"
    if record.is_file():
        template = json.loads(record.read_text(encoding="utf-8")).get("template")
        if isinstance(template, str) and template:
            return template
    return fallback


def eval_records(items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    """One single-turn LLaVA record per eval item: image, prompt, reference answer (image paths relative to
    the world root)."""
    return [
        {
            "id": f"{item.set_name}_{item.question_id}",
            "image": item.image,
            "conversations": [
                {"from": "human", "value": f"{IMAGE_TAG}\n{item.text}"},
                {"from": "gpt", "value": item.answer},
            ],
        }
        for item in items
    ]


def spread_over_images(items: Sequence[EvalItem], count: int) -> list[EvalItem]:
    """``count`` items covering as many distinct images as possible: first one question per image (images
    evenly spaced), then a second per image, and so on; original order kept. The eval sets ask several
    questions per scene, and every record's "other" image must come from a different scene."""
    by_image: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_image.setdefault(item.image, []).append(index)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count and any(len(group) > depth for group in by_image.values()):
        layer = [group[depth] for group in by_image.values() if len(group) > depth]
        chosen += evenly_spaced(layer, count - len(chosen))
        depth += 1
    return [items[index] for index in sorted(chosen)]


def pooled(reports: Sequence[ImageUseReport]) -> ImageUseReport:
    """Token-weighted pooling of several reports (the mean loss over all their supervised tokens)."""
    tokens = sum(report.supervised_tokens for report in reports)
    if not tokens:
        raise ValueError("no supervised tokens to pool")

    def mean(name: str) -> float:
        return sum(getattr(report, name) * report.supervised_tokens for report in reports) / tokens

    return ImageUseReport(
        records=sum(report.records for report in reports),
        supervised_tokens=tokens,
        loss_right=mean("loss_right"),
        loss_blank=mean("loss_blank"),
        loss_other=mean("loss_other"),
    )


def measure_eval_image_use(
    loss_model: LossModel,
    world: Path,
    items_by_set: Mapping[EvalSetName, Sequence[EvalItem]],
    records_per_set: int,
    *,
    batch_size: int = 16,
    held_out: bool = True,
    progress: bool = True,
) -> dict[str, Any] | None:
    """The report's ``image_use`` object over ``records_per_set`` questions (``spread_over_images``) of each
    of ``IMAGE_USE_SETS`` that was run (None when none was)."""
    if records_per_set < 1:
        raise ValueError(f"records_per_set must be >= 1, got {records_per_set}")
    by_set: dict[str, ImageUseReport] = {}
    for name in IMAGE_USE_SETS:
        if not items_by_set.get(name):
            continue
        picked = spread_over_images(items_by_set[name], records_per_set)
        if len({item.image for item in picked}) < 2:
            raise EvalDataError(
                f"image_use: the {name} questions show a single image; another scene's is needed"
            )
        records = validate_all(eval_records(picked), f"eval {name}")
        by_set[name] = image_use_of_records(
            loss_model.model,
            loss_model.processor,
            records,
            world,
            template=loss_model.template,
            batch_size=batch_size,
            source=f"eval {name}",
            progress=progress,
        )
    if not by_set:
        return None
    return {
        **pooled(list(by_set.values())).to_json(),
        "held_out": held_out,
        "template": loss_model.template,
        "by_set": {name: report.to_json() for name, report in by_set.items()},
    }
