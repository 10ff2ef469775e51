"""Registered job types: each is a typed parameter dataclass with presets, the project CLI it runs (an argument
list, never a shell string), and the result it leaves in the job's run folder.

Parameters arrive as JSON from the tab or the API: ``{"preset": "tiny", "max_steps": 5}`` picks a preset and
overrides fields. Unknown keys, wrong types, out-of-range values and paths that leave the project are refused
with an error naming the field. Input paths are relative to the project root (``assets/...``,
``runs/...``); every output goes to the job's own folder in the workspace.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from trainer.launcher.job_params import (
    EMBEDDED_LLAVA,
    EMBEDDED_MODELS,
    DataEngineParams,
    IndexBuildParams,
    LlavaEvalParams,
    LlavaTrainParams,
    ReactCustomizeParams,
    ReactEvalParams,
    RecipeParams,
)
from trainer.launcher.param_types import JobParamsError, check_value, param_types
from trainer.launcher.workspace import PathOutsideWorkspaceError, confined, is_inside
from vision_common.paths import PROJECT_ROOT

__all__ = [  # the parameter classes and the error are re-exported: callers know them from here
    "EMBEDDED_LLAVA", "EMBEDDED_MODELS", "JOB_TYPES", "DataEngineParams", "IndexBuildParams", "JobParamsError",
    "JobType", "LlavaEvalParams", "LlavaTrainParams", "ReactCustomizeParams", "ReactEvalParams", "RecipeParams",
    "get_job_type",
]  # fmt: skip


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
        preset, values = self.split_params(raw)
        merged = {**self.defaults(), **(self.presets[preset] if preset else {}), **values}
        # Every field is checked, so the form can show each bad one next to its box at once.
        errors: dict[str, str] = {}
        checked: dict[str, Any] = {}
        for name, ptype in param_types(self.params_type).items():
            try:
                checked[name] = check_value(self.name, name, merged[name], ptype)
            except JobParamsError as exc:
                errors[name] = str(exc)
        for name in self.path_fields:
            value = checked.get(name)
            if value:
                problem = self._path_problem(name, value, project_root, workspace)
                if problem:
                    errors[name] = problem
        for name in REQUIRED.get(self.name, ()):
            if name not in errors and not checked.get(name):
                errors[name] = f"{self.name}.{name} is required"
        if errors:
            raise JobParamsError("; ".join(errors.values()), errors)
        return self.params_type(**checked)

    def split_params(self, raw: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """(preset, overrides) of JSON-like parameters; a request that is not an object, names an unknown
        preset or an unknown parameter is refused as a whole (no field to blame)."""
        if not isinstance(raw, Mapping):
            raise JobParamsError(f"{self.name}: parameters must be a JSON object, got {type(raw).__name__}")
        values = dict(raw)
        preset = values.pop("preset", None)
        if preset is not None and preset not in self.presets:
            raise JobParamsError(f"{self.name}: unknown preset {preset!r}; presets: {sorted(self.presets)}")
        known = {f.name for f in fields(self.params_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise JobParamsError(f"{self.name}: unknown parameter(s) {unknown}; parameters: {sorted(known)}")
        return preset, values

    def _path_problem(self, name: str, value: str, project_root: Path, workspace: Path | None) -> str | None:
        """Why an input path is refused, or None: it must lie inside the project, or be an absolute path
        inside ``workspace``, and exist."""
        try:
            if workspace is not None and Path(value).is_absolute() and is_inside(workspace, Path(value)):
                inside = str(Path(value).resolve().relative_to(workspace.resolve()))
                path = confined(workspace, inside, field=f"{self.name}.{name}")
            else:
                path = confined(project_root, value, field=f"{self.name}.{name}")
        except PathOutsideWorkspaceError as exc:
            return str(exc)
        return None if path.exists() else f"{self.name}.{name}: {value} does not exist"

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


def _opt(flag: str, value: Any) -> list[str]:
    return [] if value in (None, "") else [flag, str(value)]


def _launch(module: str, processes: int) -> list[str]:
    """How a trainer module starts: ``-m module`` for one process; for several, ``accelerate launch`` (its
    torchrun launcher, one process per GPU, DDP; on a machine without CUDA the runtime makes it a gloo CPU
    group). Both trainers read their distributed setup from accelerate, so the module's own flags are the same."""
    if processes <= 1:
        return ["-m", module]
    return [
        "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
        "--num_machines", "1", "--dynamo_backend", "no", "-m", module,
    ]  # fmt: skip


def _llava(stage: int) -> Callable[[LlavaTrainParams, Path], list[str]]:
    def command(p: LlavaTrainParams, run: Path) -> list[str]:
        argv = [*_launch("trainer.llava.train", p.processes), "--config", p.config, "--stage", str(stage)]
        argv += ["--data", p.data]
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
                *_launch("trainer.react", p.processes),
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
                # The job's own work folder: a rerun of this job resumes its build by step, and two jobs
                # never share intermediates.
                "--work",
                str(run / "work"),
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
