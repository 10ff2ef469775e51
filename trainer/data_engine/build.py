"""Build LLaVA instruction data (stage 2) and caption data (stage 1) from COCO-format annotations.

Everything is computed in memory, validated, and only then written in one atomic rename, so a failed run
never leaves a partial JSON behind. Output image paths are relative to the image folder.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from trainer.data_engine.academic import AcademicConfig, ProbeStatistics, academic_record, probe_statistics
from trainer.data_engine.coco import CocoDataset, CocoFormatError, CocoImage, load_coco
from trainer.data_engine.records import (
    caption_record,
    conversation_record,
    multiple_choice_records,
    short_answer_record,
)
from trainer.data_engine.schema import validate_records
from trainer.data_engine.teachers import ResponseType, Teacher, TeacherContext, TeacherOutput
from trainer.synthworld.questions import SceneView, scene_from_coco
from vision_common.atomic import OutputNotWritableError, atomic_write_json

TEACHER_TYPES: dict[str, ResponseType] = {
    "conversation": ResponseType.CONVERSATION,
    "detail": ResponseType.DETAIL,
    "complex": ResponseType.COMPLEX,
}
QUESTION_TYPES = ("short", "mc", "academic")
ALL_TYPES: tuple[str, ...] = (*TEACHER_TYPES, *QUESTION_TYPES)


@dataclass(frozen=True)
class BuildConfig:
    """What to generate. ``types`` names from ALL_TYPES; ``workers`` > 1 overlaps teacher calls (LLM teacher)."""

    types: tuple[str, ...] = ALL_TYPES
    seed: int = 0
    limit: int | None = None  # first N images of the instances file; None = all
    workers: int = 1
    max_short_turns: int = 8  # short-answer questions packed into one record per image
    max_mc_per_image: int = 3
    show_progress: bool = True
    academic: AcademicConfig = field(default_factory=AcademicConfig)
    # Share of images that get a record of a type (type -> fraction in (0, 1]); unlisted types: every image.
    # The draw is seeded per (seed, image, type), so the mix is reproducible and independent of worker order.
    fractions: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.types:
            raise ValueError("types must name at least one of " + ", ".join(ALL_TYPES))
        unknown = [t for t in self.types if t not in ALL_TYPES]
        if unknown:
            raise ValueError(f"unknown type(s) {unknown}; choose from {', '.join(ALL_TYPES)}")
        if len(set(self.types)) != len(self.types):
            raise ValueError(f"types contains duplicates: {list(self.types)}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be positive or None, got {self.limit}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.max_short_turns < 1 or self.max_mc_per_image < 1:
            raise ValueError("max_short_turns and max_mc_per_image must be >= 1")
        for name, fraction in self.fractions.items():
            if name not in self.types:
                raise ValueError(f"fractions names type {name!r}, which is not in types {list(self.types)}")
            if not 0.0 < fraction <= 1.0:
                raise ValueError(f"fractions[{name!r}] must be in (0, 1], got {fraction}")

    def wants(self, kind: str, image_id: int) -> bool:
        """Whether image ``image_id`` gets a record of type ``kind`` (always, unless ``fractions`` thins it)."""
        fraction = self.fractions.get(kind, 1.0)
        return fraction >= 1.0 or random.Random(f"{self.seed}/{image_id}/{kind}/keep").random() < fraction

    @classmethod
    def tiny(cls) -> BuildConfig:
        """Three images, every type, no progress bar: a smoke run that takes well under a second."""
        return cls(limit=3, show_progress=False)

    @property
    def teacher_kinds(self) -> tuple[ResponseType, ...]:
        return tuple(TEACHER_TYPES[t] for t in self.types if t in TEACHER_TYPES)


@dataclass
class Stats:
    """Counts of one run: records written per type, teacher replies dropped per type and why."""

    images: int = 0
    records: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    drop_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "records": dict(self.records),
            "total_records": self.total_records,
            "dropped": dict(self.dropped),
            "drop_reasons": dict(self.drop_reasons),
        }

    def summary(self) -> str:
        lines = [f"images: {self.images}", f"records: {self.total_records}"]
        lines += [f"  {kind}: {count}" for kind, count in sorted(self.records.items())]
        lines.append(f"malformed/dropped: {sum(self.dropped.values())}")
        lines += [f"  {kind}: {count}" for kind, count in sorted(self.dropped.items())]
        lines += [f"    {reason}: {count}" for reason, count in self.drop_reasons.most_common()]
        return "\n".join(lines)


def check_output_writable(path: str | os.PathLike[str]) -> Path:
    """Fail before any expensive work if ``path`` cannot be written (probes with a real temporary file)."""
    path = Path(path)
    if path.is_dir():
        raise OutputNotWritableError(
            f"output {path} is a directory; give a file name such as {path}/data.json"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write output {path}: {exc.strerror or exc}") from exc
    return path


def scene_of(image: CocoImage, dataset: CocoDataset) -> SceneView:
    try:
        return scene_from_coco(image.info, list(image.annotations), dataset.category_names)
    except ValueError as exc:
        raise CocoFormatError(f"image {image.file_name!r} (id={image.image_id}): {exc}") from exc


def teacher_context(image: CocoImage, dataset: CocoDataset, seed: int) -> TeacherContext:
    return TeacherContext(
        image_id=image.image_id,
        file_name=image.file_name,
        width=image.width,
        height=image.height,
        captions=image.captions,
        scene=scene_of(image, dataset),
        vocabulary=tuple(sorted(set(dataset.category_names.values()))),
        seed=seed,
    )


def _teacher_outputs(
    contexts: Sequence[TeacherContext], teacher: Teacher, config: BuildConfig
) -> Iterator[TeacherOutput]:
    """Teacher outputs in image order; with workers > 1 calls overlap but the order (and output) is unchanged.
    An image is asked only for the types ``config.fractions`` keeps for it (no wasted LLM requests)."""

    def generate(context: TeacherContext) -> TeacherOutput:
        kinds = tuple(k for k in config.teacher_kinds if config.wants(_type_name(k), context.image_id))
        return teacher.generate(context, kinds) if kinds else TeacherOutput()

    if config.workers == 1:
        yield from (generate(context) for context in contexts)
    else:
        pool = ThreadPoolExecutor(max_workers=config.workers)
        try:
            yield from pool.map(generate, contexts)
        finally:
            # On an endpoint error, drop the queued requests instead of waiting for every one of them.
            pool.shutdown(wait=True, cancel_futures=True)


def build_records(
    dataset: CocoDataset, teacher: Teacher, config: BuildConfig
) -> tuple[list[dict[str, Any]], Stats]:
    """All stage-2 records for ``dataset`` in image order, plus the run's counts."""
    stats = Stats()
    contexts = [teacher_context(image, dataset, config.seed) for image in dataset.images]
    outputs = _teacher_outputs(contexts, teacher, config)
    probes = _probe_statistics(contexts) if "academic" in config.types else None
    records: list[dict[str, Any]] = []
    progress = tqdm(zip(contexts, outputs), total=len(contexts), desc="instruction data", unit="image",
                    disable=not config.show_progress)  # fmt: skip
    for context, output in progress:
        stats.images += 1
        for conversation in output.conversations:
            records.append(conversation_record(conversation, context.image_id, context.file_name))
            stats.records[_type_name(conversation.kind)] += 1
        for dropped in output.dropped:
            stats.dropped[_type_name(dropped.kind)] += 1
            stats.drop_reasons[dropped.reason] += 1
        records += _question_records(context, config, stats, probes)
    validate_records(records)
    return records, stats


def _probe_statistics(contexts: Sequence[TeacherContext]) -> ProbeStatistics:
    """POPE negatives come from the build's own (train) scenes and its category vocabulary."""
    vocabulary = contexts[0].vocabulary if contexts else ()
    return probe_statistics((context.scene for context in contexts), vocabulary)


def _type_name(kind: ResponseType) -> str:
    return next(name for name, value in TEACHER_TYPES.items() if value is kind)


def _question_records(
    context: TeacherContext, config: BuildConfig, stats: Stats, probes: ProbeStatistics | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "academic" in config.types and probes is not None and config.wants("academic", context.image_id):
        for repeat in range(config.academic.repeats):
            # The first record keeps the seed it had before repeats existed (the default data is unchanged).
            tail = f"/{repeat}" if repeat else ""
            rng = random.Random(f"{config.seed}/{context.image_id}/academic{tail}")
            record = academic_record(
                context.scene, rng, context.image_id, context.file_name, probes, config.academic, repeat
            )
            if record is not None:
                out.append(record)
                stats.records["academic"] += 1
    if "short" in config.types and config.wants("short", context.image_id):
        rng = random.Random(f"{config.seed}/{context.image_id}/short")
        record = short_answer_record(
            context.scene, rng, context.image_id, context.file_name, max_turns=config.max_short_turns
        )
        if record is not None:
            out.append(record)
            stats.records["short"] += 1
    if "mc" in config.types and config.wants("mc", context.image_id):
        rng = random.Random(f"{config.seed}/{context.image_id}/mc")
        items = multiple_choice_records(
            context.scene, rng, context.image_id, context.file_name, max_items=config.max_mc_per_image
        )
        out += items
        stats.records["mc"] += len(items)
    return out


def build_instruction_data(
    captions: str | os.PathLike[str],
    instances: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    teacher: Teacher,
    config: BuildConfig | None = None,
) -> Stats:
    """Read COCO files, generate every requested type, validate and write ``out`` atomically."""
    config = config or BuildConfig()
    out = check_output_writable(out)
    dataset = load_coco(captions, instances, images_dir, limit=config.limit)
    records, stats = build_records(dataset, teacher, config)
    atomic_write_json(out, records)
    return stats


def build_stage1_records(dataset: CocoDataset, seed: int) -> tuple[list[dict[str, Any]], Stats]:
    stats = Stats()
    records = []
    for image in dataset.images:
        stats.images += 1
        rng = random.Random(f"{seed}/{image.image_id}/caption")
        record = caption_record(image.captions, rng, image.image_id, image.file_name)
        if record is None:
            stats.dropped["caption"] += 1
            stats.drop_reasons["image has no caption"] += 1
            continue
        records.append(record)
        stats.records["caption"] += 1
    validate_records(records)
    return records, stats


def build_stage1_data(
    captions: str | os.PathLike[str],
    instances: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    limit: int | None = None,
) -> Stats:
    """Stage-1 caption data: ``<image>\\n`` + a brief-description instruction -> one caption per image."""
    out = check_output_writable(out)
    dataset = load_coco(captions, instances, images_dir, limit=limit)
    records, stats = build_stage1_records(dataset, seed)
    atomic_write_json(out, records)
    return stats
