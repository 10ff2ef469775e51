"""Registered job types: each is a typed parameter dataclass with presets, the project CLI it runs (an argument
list, never a shell string), and the result it leaves in the job's run folder.

Parameters arrive as JSON from the tab or the API: ``{"preset": "tiny", "max_steps": 5}`` picks a preset and
overrides fields. Unknown keys, wrong types, out-of-range values and paths that leave the project are refused
with an error naming the field. Input paths are relative to the project root (``assets/...``,
``runs/...``); every output goes to the job's own folder in the workspace.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from trainer.launcher.workspace import PathOutsideWorkspaceError, confined, is_inside
from trainer.llava.config import PRESETS as LLAVA_CONFIGS  # the trainers' own names: one list each
from trainer.react.config import STRATEGIES as REACT_STRATEGIES
from vision_common.paths import PROJECT_ROOT

EMBEDDED_LLAVA = "assets/models/synthworld-llava-next"
EMBEDDED_MODELS = "assets/synthworld/models"


class JobParamsError(ValueError):
    """Bad job parameters; the message names the job type and the field."""


@dataclass(frozen=True)
class LlavaTrainParams:
    """One LLaVA stage (``python -m trainer.llava.train``)."""

    config: str = "tiny"
    """Trainer preset: tiny (tests, seconds), synthworld (the embedded model's recipe), llava_1_5_7b, llava_next_7b."""
    data: str = ""
    """LLaVA conversation JSON (stage 1: captions, stage 2: instructions)."""
    images: str = ""
    """Folder the records' image paths are relative to."""
    init: str = ""
    """LLaVA-NeXT folder to start from (stage 2: a stage-1 result; empty: build from the parts below)."""
    vision_tower: str = ""
    language_model: str = ""
    tokenizer: str = ""
    max_steps: int | None = None
    checkpoint_every: int | None = None
    micro_batch_size: int | None = None


@dataclass(frozen=True)
class DataEngineParams:
    """LLaVA instruction data from COCO-format annotations (``python -m trainer.data_engine build``)."""

    captions: str = ""
    instances: str = ""
    images: str = ""
    types: str = "conversation,detail,complex"
    limit: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class IndexBuildParams:
    """A CLIP + FAISS index over a pool (``python -m react_explorer.build_index``)."""

    pool: str = ""
    model: str = f"{EMBEDDED_MODELS}/synthworld-clip"
    batch_size: int = 256


@dataclass(frozen=True)
class LlavaEvalParams:
    """Held-out SynthWorld scores of a chat model (``python -m trainer.eval llava``)."""

    model: str = EMBEDDED_LLAVA
    world: str = ".cache/synthworld/default-seed0"
    limit: int = 60


@dataclass(frozen=True)
class RecipeParams:
    """One of the recipes that rebuild the committed models (``python -m trainer.recipe``)."""

    reduced: bool = True
    """The reduced recipe (tiny presets, about a minute); off: the full build (tens of minutes)."""
    seed: int = 0


@dataclass(frozen=True)
class ReactCustomizeParams:
    """REACT customization of a CLIP on a retrieved subset (``python -m trainer.react train``)."""

    subset: str = ""
    """The explorer's exported parquet subset (or the retrieve CLI's output)."""
    base: str = f"{EMBEDDED_MODELS}/synthworld-clip"
    config: str = "synthworld"
    """trainer.react preset: tiny, synthworld, vit-b-32."""
    strategy: str = "gated-image"
    max_steps: int | None = None
    gamma: float = 0.9
    classes: str = ""
    """The retrieval's class names (comma-separated): the zero-shot before/after scores only these classes."""
    eval_task: str = ""
    """A labelled task (SynthWorld task folder or ImageFolder) scored zero-shot before and after into
    zeroshot.json (empty: no scores)."""
    pool: str = ""
    """The pool the subset was retrieved from; training does not read it: "Re-index the pool with this CLIP"
    embeds it with the result."""


@dataclass(frozen=True)
class ReactEvalParams:
    """Zero-shot top-1/top-5 before/after (``python -m trainer.react eval``)."""

    model: str = ""
    """The customized model directory (a react-customize job's ``final``)."""
    baseline: str = f"{EMBEDDED_MODELS}/synthworld-clip"
    task: str = ".cache/synthworld/default-seed0/tasks/species"
    classes: str = ""
    """Comma-separated class names: score only these classes of the task (empty: all)."""


@dataclass(frozen=True)
class JobType:
    name: str
    title: str
    params_type: type
    presets: Mapping[str, Mapping[str, Any]]
    command: Callable[[Any, Path], list[str]]
    """(params, run folder) -> the argument list after ``python``."""
    result: str
    """What the run folder holds when the job succeeds (shown as "open result")."""
    path_fields: tuple[str, ...] = ()
    resumable: bool = False
    """The command continues from its last checkpoint when run again with ``--resume``."""

    def defaults(self) -> dict[str, Any]:
        return asdict(self.params_type())

    def params_from(
        self, raw: Mapping[str, Any], project_root: Path = PROJECT_ROOT, workspace: Path | None = None
    ) -> Any:
        """Validated parameters from JSON-like ``raw`` (``preset`` picks a preset, other keys override).

        An input path is relative to the project root, or an absolute path inside ``workspace`` (another job's
        result); anything else, ``..`` included, is refused."""
        if not isinstance(raw, Mapping):
            raise JobParamsError(f"{self.name}: parameters must be a JSON object, got {type(raw).__name__}")
        values = dict(raw)
        preset = values.pop("preset", None)
        if preset is not None and preset not in self.presets:
            raise JobParamsError(f"{self.name}: unknown preset {preset!r}; presets: {sorted(self.presets)}")
        known = {f.name: f for f in fields(self.params_type)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise JobParamsError(f"{self.name}: unknown parameter(s) {unknown}; parameters: {sorted(known)}")
        merged = {**(self.presets[preset] if preset else {}), **values}
        for name, value in merged.items():
            merged[name] = _checked(self.name, name, value, _field_type(self.params_type, name))
        params = self.params_type(**merged)
        for name in self.path_fields:
            value = getattr(params, name)
            if value:
                try:
                    if (
                        workspace is not None
                        and Path(value).is_absolute()
                        and is_inside(workspace, Path(value))
                    ):
                        path = confined(workspace, str(Path(value).resolve().relative_to(workspace.resolve())),
                                        field=f"{self.name}.{name}")  # fmt: skip
                    else:
                        path = confined(project_root, value, field=f"{self.name}.{name}")
                except PathOutsideWorkspaceError as exc:
                    raise JobParamsError(str(exc)) from exc
                if not path.exists():
                    raise JobParamsError(f"{self.name}.{name}: {value} does not exist")
        for name in REQUIRED.get(self.name, ()):
            if not getattr(params, name):
                raise JobParamsError(f"{self.name}.{name} is required")
        if isinstance(params, ReactCustomizeParams) and params.strategy not in REACT_STRATEGIES:
            raise JobParamsError(
                f"{self.name}.strategy must be one of {REACT_STRATEGIES}, got {params.strategy!r}"
            )
        if isinstance(params, LlavaTrainParams) and params.config not in LLAVA_CONFIGS:
            raise JobParamsError(f"{self.name}.config must be one of {LLAVA_CONFIGS}, got {params.config!r}")
        return params

    def argv(self, params: Any, run_dir: Path, *, resume: bool = False) -> list[str]:
        argv = [sys.executable, *self.command(params, run_dir)]
        if resume and self.resumable:
            argv.append("--resume")
        return argv


REQUIRED: dict[str, tuple[str, ...]] = {
    "llava-stage1": ("data", "images"),
    "llava-stage2": ("data", "images"),
    "data-engine": ("captions", "instances", "images"),
    "index-build": ("pool",),
    "react-customize": ("subset",),
    "react-eval": ("model",),
}


def _field_type(params_type: type, name: str) -> Any:
    return typing.get_type_hints(params_type)[name]


def _checked(job: str, name: str, value: Any, annotation: Any) -> Any:
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return None
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value > 10**9:
            raise JobParamsError(f"{job}.{name} must be between 0 and 1e9, got {value}")
        return value
    if float in allowed and isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value <= 1e9:
            raise JobParamsError(f"{job}.{name} must be between 0 and 1e9, got {value}")
        return float(value)
    if str in allowed and isinstance(value, str):
        if len(value) > 1000:
            raise JobParamsError(f"{job}.{name} is longer than 1000 characters")
        return value
    if bool in allowed and isinstance(value, bool):
        return value
    names = " or ".join(getattr(a, "__name__", str(a)) for a in allowed)
    raise JobParamsError(f"{job}.{name} must be {names}, got {value!r}")


def _opt(flag: str, value: Any) -> list[str]:
    return [] if value in (None, "") else [flag, str(value)]


def _llava(stage: int) -> Callable[[LlavaTrainParams, Path], list[str]]:
    def command(p: LlavaTrainParams, run: Path) -> list[str]:
        argv = ["-m", "trainer.llava.train", "--config", p.config, "--stage", str(stage), "--data", p.data]
        argv += ["--images", p.images, "--out", str(run), "--no-progress"]
        for flag, value in (("--init", p.init), ("--vision-tower", p.vision_tower),
                            ("--language-model", p.language_model), ("--tokenizer", p.tokenizer),
                            ("--max-steps", p.max_steps), ("--checkpoint-every", p.checkpoint_every),
                            ("--micro-batch-size", p.micro_batch_size)):  # fmt: skip
            argv += _opt(flag, value)
        return argv

    return command


LLAVA_PATHS = ("data", "images", "init", "vision_tower", "language_model", "tokenizer")

JOB_TYPES: dict[str, JobType] = {
    t.name: t
    for t in (
        JobType(
            "llava-stage1",
            "LLaVA stage 1 (projector alignment)",
            LlavaTrainParams,
            {
                "tiny": {"config": "tiny", "max_steps": 4, "checkpoint_every": 1},
                "synthworld": {"config": "synthworld"},
            },
            _llava(1),
            "final/ (LLaVA-NeXT model), metrics.jsonl, checkpoints/",
            LLAVA_PATHS,
            True,
        ),
        JobType(
            "llava-stage2",
            "LLaVA stage 2 (instruction tuning)",
            LlavaTrainParams,
            {
                "tiny": {"config": "tiny", "max_steps": 6, "checkpoint_every": 1},
                "synthworld": {"config": "synthworld", "init": EMBEDDED_LLAVA},
            },
            _llava(2),
            "final/ (LLaVA-NeXT model), metrics.jsonl, checkpoints/",
            LLAVA_PATHS,
            True,
        ),
        JobType(
            "data-engine",
            "Instruction data (data engine)",
            DataEngineParams,
            {"tiny": {"limit": 8}},
            lambda p, run: [
                "-m",
                "trainer.data_engine",
                "build",
                "--captions",
                p.captions,
                "--instances",
                p.instances,
                "--images",
                p.images,
                "--out",
                str(run / "instructions.json"),
                "--stage1-out",
                str(run / "stage1.json"),
                "--types",
                p.types,
                "--seed",
                str(p.seed),
                *_opt("--limit", p.limit),
            ],
            "instructions.json, stage1.json",
            ("captions", "instances", "images"),
        ),
        JobType(
            "index-build",
            "REACT index build",
            IndexBuildParams,
            {"tiny": {"batch_size": 16}},
            lambda p, run: [
                "-m",
                "react_explorer.build_index",
                "--pool",
                p.pool,
                "--out",
                str(run / "index"),
                "--model",
                f"local-dir:{p.model}",
                "--batch-size",
                str(p.batch_size),
                "--no-progress",
            ],
            "index/ (FAISS index directory)",
            ("pool", "model"),
        ),
        JobType(
            "llava-eval",
            "LLaVA evaluation (SynthWorld held-out sets)",
            LlavaEvalParams,
            {"tiny": {"limit": 4}},
            lambda p, run: [
                "-m",
                "trainer.eval",
                "llava",
                "--model",
                p.model,
                "--world",
                p.world,
                "--limit",
                str(p.limit),
                "--json",
                "--out",
                str(run / "eval.json"),
                "--no-progress",
            ],
            "eval.json",
            ("model", "world"),
        ),
        JobType(
            "react-customize",
            "REACT customization of CLIP",
            ReactCustomizeParams,
            {"tiny": {"config": "tiny", "max_steps": 4}, "synthworld": {"config": "synthworld"}},
            lambda p, run: [
                "-m",
                "trainer.react",
                "train",
                "--subset",
                p.subset,
                "--base",
                p.base,
                "--out",
                str(run),
                "--preset",
                p.config,
                "--strategy",
                p.strategy,
                "--gamma",
                str(p.gamma),
                *_opt("--max-steps", p.max_steps),
                *_opt("--eval-task", p.eval_task),
                *(_opt("--eval-classes", p.classes) if p.eval_task else []),
                "--no-progress",
            ],
            "final/ (open_clip directory with the REACT settings), zeroshot.json (with an eval_task), "
            "metrics.jsonl, checkpoints/",
            ("subset", "base", "eval_task", "pool"),
            True,
        ),  # fmt: skip
        JobType(
            "react-eval",
            "REACT zero-shot evaluation (before/after)",
            ReactEvalParams,
            {"tiny": {}},
            lambda p, run: [
                "-m",
                "trainer.react",
                "eval",
                "--model",
                p.model,
                "--baseline",
                p.baseline,
                "--task",
                p.task,
                *_opt("--classes", p.classes),
                "--json",
                "--out",
                str(run / "zeroshot.json"),
            ],
            "zeroshot.json (top-1/top-5 before and after)",
            ("model", "baseline", "task"),
        ),  # fmt: skip
        JobType(
            "recipe-synthworld",
            "Recipe: SynthWorld foundation models",
            RecipeParams,
            {"tiny": {"reduced": True}},
            lambda p, run: [
                "-m",
                "trainer.recipe",
                "synthworld",
                "--out",
                str(run / "assets"),
                "--seed",
                str(p.seed),
                *(["--reduced"] if p.reduced else []),
            ],
            "assets/ (tokenizer, tiny CLIP, tiny LM, manifest.json)",
        ),
        JobType(
            "recipe-llava",
            "Recipe: the embedded LLaVA-NeXT",
            RecipeParams,
            {"tiny": {"reduced": True}},
            lambda p, run: [
                "-m",
                "trainer.recipe",
                "synthworld-llava",
                "--out",
                str(run / "model"),
                "--seed",
                str(p.seed),
                *(["--reduced"] if p.reduced else []),
            ],
            "model/ (LLaVA-NeXT, manifest.json)",
        ),
    )  # fmt: skip
}


def get_job_type(name: str) -> JobType:
    if name not in JOB_TYPES:
        raise JobParamsError(f"unknown job type {name!r}; registered types: {sorted(JOB_TYPES)}")
    return JOB_TYPES[name]
