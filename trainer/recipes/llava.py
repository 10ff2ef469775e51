"""The embedded SynthWorld LLaVA-NeXT recipe: foundation models -> stage 1 -> stage 2 -> eval -> assets.

    python -m trainer.recipe synthworld-llava              # full: writes assets/models/synthworld-llava-next
    python -m trainer.recipe synthworld-llava --no-anyres  # the base-tile-only ablation (not committed)
    python -m trainer.recipe synthworld-llava --reduced    # tiny presets in seconds (CI)

It starts from the foundation models the ``synthworld`` recipe committed (tokenizer, tiny CLIP, tiny LM),
converts the CLIP image tower to a transformers ``CLIPVisionModel``, runs LLaVA stage 1 (projector on
captions, ``plain`` template) and stage 2 (projector + LM on instructions, ``vicuna_v1``) with the project's
trainer, evaluates the result on the held-out SynthWorld sets, and atomically replaces the output folder with
the model, a model card and a manifest. Every step is one of the project's CLIs (argv lists, no shell).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from trainer.recipes.foundation import (
    Step,
    instruction_data_step,
    printable_command,
    run_steps,
    world_cache_dir,
    world_step,
)
from vision_common.anyres.geometry import LLAVA_1_6_GRIDS
from vision_common.atomic import atomic_directory, atomic_write_text
from vision_common.manifest import build_manifest, write_manifest
from vision_common.paths import PROJECT_ROOT

# The embedded model is committed; keep it well inside the repository's artifact budget.
LLAVA_BUDGET_BYTES = 15 * 1024 * 1024


@dataclass(frozen=True)
class LlavaRecipeConfig:
    """``full()`` is the committed embedded model; ``reduced()`` the CI variant (same steps, tiny presets)."""

    world_preset: str = "default"
    trainer_preset: str = "synthworld"
    foundation: str = "assets/synthworld"
    seed: int = 0
    anyres_grids: str | None = None  # None: the trainer's LLaVA-1.6 grids; "1x1": base tile only
    stage1_steps: int | None = None
    stage2_steps: int | None = None
    eval_limit: int = 300  # questions per set: the eval's default, about a minute on 2 cores
    # The stage-2 mix (docs/data_engine.md): one academic VQA record per image (short answers, balanced
    # yes/no probes, small details, multiple choice) plus LLaVA's three teacher types on a share of the images.
    data_types: str = "conversation,detail,complex,academic"
    data_fractions: str = "conversation=0.3,detail=0.3,complex=0.2"
    # Issue #18's drill (docs/recipe.md, "The drill"): stage 1 and stage 2 on the base tile, then
    # ``drill_steps`` updates of ``drill_batch`` academic records (``drill_repeats`` per image, short-answer
    # categories thinned by ``drill_keep``: many answers that only the image gives, in low-noise updates), then
    # ``anyres_steps`` updates of the stage-2 mix at the AnyRes grids. 0: no drill (stage 2 at AnyRes directly).
    drill_steps: int = 0
    drill_batch: int = 32
    drill_lr: float = 1e-3
    drill_repeats: int = 6
    drill_keep: str = "count=0.25,text=0.3"
    drill_yes_no_pairs: int = 1
    anyres_steps: int = 300
    # Chat examples written beside the model: the first held-out question of each category, then a probe.
    example_categories: tuple[str, ...] = ("color", "shape", "count", "position", "text")

    def __post_init__(self) -> None:
        if self.world_preset not in ("tiny", "default", "simple"):
            raise ValueError(f"world_preset must be 'tiny', 'default' or 'simple', got {self.world_preset!r}")
        if self.eval_limit < 1:
            raise ValueError("eval_limit must be >= 1")
        for name in ("drill_steps", "anyres_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.drill_batch < 1 or self.drill_repeats < 1 or self.drill_lr <= 0:
            raise ValueError("drill_batch and drill_repeats must be >= 1 and drill_lr > 0")
        object.__setattr__(self, "example_categories", tuple(self.example_categories))

    @property
    def drills(self) -> bool:
        return self.drill_steps > 0

    @classmethod
    def full(cls) -> LlavaRecipeConfig:
        """The committed embedded model: the simple world (issue #18's preset) and the drill."""
        return cls(world_preset="simple", drill_steps=1200)

    @classmethod
    def reduced(cls) -> LlavaRecipeConfig:
        return cls(
            world_preset="tiny",
            trainer_preset="tiny",
            foundation=".cache/assets-reduced",
            stage1_steps=2,
            stage2_steps=2,
            drill_steps=2,
            drill_batch=2,
            drill_repeats=2,
            anyres_steps=2,
            eval_limit=4,
        )


def _grids_text(grids: tuple[tuple[int, int], ...]) -> str:
    return ",".join(f"{cols}x{rows}" for cols, rows in grids)


def final_stage(cfg: LlavaRecipeConfig) -> str:
    """The step (and run folder) whose model the recipe ships. With the drill, the last stage is named by its
    grids, so the AnyRes model and the base-tile ablation can share one ``--work`` folder: the ablation then
    reuses stages 1-2 and the drill and runs only its own last stage and eval."""
    if not cfg.drills:
        return "stage2"
    return "base-tile" if cfg.anyres_grids == "1x1" else "anyres"


def final_model_dir(cfg: LlavaRecipeConfig, work: Path) -> Path:
    return work / final_stage(cfg) / "final"


def plan_llava_steps(cfg: LlavaRecipeConfig, world: Path, work: Path) -> list[Step]:
    py = sys.executable
    models = (PROJECT_ROOT / cfg.foundation / "models").resolve()
    images = world / "scenes" / "images" / "train"
    instr, stage1, drill = work / "llava_instruct.json", work / "llava_stage1.json", work / "llava_drill.json"
    vision = work / "clip-vision-hf"

    def train(name: str, stage: int, data: Path, extra: list[str], steps: int | None) -> Step:
        argv = [py, "-m", "trainer.llava.train", "--config", cfg.trainer_preset, "--stage", str(stage)]
        argv += ["--data", str(data), "--images", str(images), "--out", str(work / name)]
        argv += ["--seed", str(cfg.seed), "--no-progress", *extra]
        return Step(name, argv + (["--max-steps", str(steps)] if steps else []), [], resume_dir=work / name)

    stage1_parts = ["--vision-tower", str(vision), "--language-model", str(models / "synthworld-lm")]
    stage1_parts += ["--tokenizer", str(models / "synthworld-tokenizer")]
    # With the drill, stages 1-2 and the drill run on the base tile (a fifth of AnyRes's image tokens); the
    # last stage moves to the AnyRes grids (or stays on the base tile for the ablation).
    first_grids = "1x1" if cfg.drills else cfg.anyres_grids
    if first_grids:
        stage1_parts += ["--anyres-grids", first_grids]
    steps = [
        world_step(world, cfg.seed, cfg.world_preset),
        instruction_data_step(
            world, instr, stage1, cfg.seed, ["--types", cfg.data_types, "--fractions", cfg.data_fractions]
        ),
        Step(
            "clip-convert",
            [py, "-m", "trainer.foundation.convert_clip", "--open-clip", str(models / "synthworld-clip")]
            + ["--out", str(vision)],
            [],
        ),
        train("stage1", 1, stage1, stage1_parts, cfg.stage1_steps),
        train("stage2", 2, instr, ["--init", str(work / "stage1" / "final")], cfg.stage2_steps),
    ]
    if cfg.drills:
        ann = world / "scenes" / "annotations"
        data_argv = [py, "-m", "trainer.data_engine", "build", "--teacher", "rule", "--types", "academic"]
        data_argv += ["--captions", str(ann / "captions_train.json")]
        data_argv += ["--instances", str(ann / "instances_train.json"), "--images", str(images)]
        data_argv += ["--out", str(drill), "--seed", str(cfg.seed + 1)]
        data_argv += ["--academic-repeats", str(cfg.drill_repeats)]
        data_argv += [
            "--academic-yes-no-pairs",
            str(cfg.drill_yes_no_pairs),
            "--academic-keep",
            cfg.drill_keep,
        ]
        drill_args = ["--init", str(work / "stage2" / "final"), "--micro-batch-size", str(cfg.drill_batch)]
        drill_args += ["--learning-rate", str(cfg.drill_lr)]
        final_grids = cfg.anyres_grids or _grids_text(LLAVA_1_6_GRIDS)
        anyres_args = ["--init", str(work / "drill" / "final"), "--anyres-grids", final_grids]
        steps += [
            Step("drill-data", data_argv, []),
            train("drill", 2, drill, drill_args, cfg.drill_steps),
            train(final_stage(cfg), 2, instr, anyres_args, cfg.anyres_steps),
        ]
    eval_argv = [py, "-m", "trainer.eval", "llava", "--model", str(final_model_dir(cfg, work))]
    eval_argv += ["--world", str(world), "--limit", str(cfg.eval_limit), "--json"]
    eval_argv += ["--out", str(work / "eval.json"), "--no-progress"]
    return [*steps, Step("eval", eval_argv, [])]


def write_examples(world: Path, dest: Path, categories: tuple[str, ...]) -> list[dict]:
    """The chat tab's examples for this model, from its own world's held-out questions: the first question
    of each category in file order (not chosen by how the model answers), then the first POPE probe of
    another scene. Images are copied next to ``examples.json``."""
    eval_dir = world / "eval"
    rows = [json.loads(line) for line in (eval_dir / "vqa.jsonl").read_text(encoding="utf-8").splitlines()]
    probes = [json.loads(line) for line in (eval_dir / "pope.jsonl").read_text(encoding="utf-8").splitlines()]
    picked: list[dict] = []
    for category in categories:
        used = {item["image"] for item in picked}
        item = next((r for r in rows if r.get("category") == category and r["image"] not in used), None)
        if item is not None:
            picked.append(item)
    used = {item["image"] for item in picked}
    probe = next((r for r in probes if r["image"] not in used), None)
    if probe is not None:
        picked.append({**probe, "category": "yes_no"})
    dest.mkdir(parents=True, exist_ok=True)
    examples = []
    for index, item in enumerate(picked):
        name = f"scene_{index}.png"
        shutil.copyfile(world / item["image"], dest / name)
        examples.append(
            {"image": name, "question": item["text"], "answer": item["answer"], "category": item["category"]}
        )
    atomic_write_text(dest / "examples.json", json.dumps(examples, indent=1) + "\n")
    return examples


def model_card(cfg: LlavaRecipeConfig, metrics: dict, commands: dict[str, str]) -> str:
    report = metrics.get("eval", {})
    headline = {
        k: report.get(k)
        for k in ("short_answer_accuracy", "yes_no_f1", "multiple_choice_accuracy", "small_detail_accuracy")
    }
    lines = [
        "# synthworld-llava-next",
        "",
        "A tiny LLaVA-NeXT (AnyRes) trained by this project on SynthWorld, offline, on CPU: the embedded default",
        "of the chat app, the API server and the CLI. Tiny CLIP (64-px tiles, patch 8) + mlp2x_gelu projector +",
        "a 2.2M-parameter Llama; stage 1 aligns the projector on captions, stage 2 tunes projector + LM on",
        "rule-teacher instruction data (conversation, detail, complex reasoning, short answers, multiple choice);",
        "with the drill (docs/recipe.md), a large-batch stage of short questions on the base tile follows, then",
        "a short stage 2 at the AnyRes grids.",
        "",
        f"## Held-out SynthWorld metrics (`python -m trainer.eval llava`, {cfg.world_preset} world, "
        f"{cfg.eval_limit} questions per set)",
        "",
        "```json",
        json.dumps(headline, indent=1),
        "```",
        "",
        "## Recipe",
        "",
        "```json",
        json.dumps(asdict(cfg), indent=1),
        "```",
        "",
        *[f"- {name}: `{cmd}`" for name, cmd in commands.items()],
        "",
    ]
    return "\n".join(lines)


def run_llava_recipe(cfg: LlavaRecipeConfig, out: Path, work: Path | None = None) -> dict:
    """Run the recipe and atomically replace ``out``. With ``work`` the intermediates live there and the build
    is resumable by step (rerun the same command after an interruption); without it, in a temporary folder."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="recipe-llava-") as work_str:
            return _run_llava_recipe(cfg, out, Path(work_str), done_dir=None)
    work.mkdir(parents=True, exist_ok=True)
    return _run_llava_recipe(cfg, out, work.resolve(), done_dir=work.resolve() / ".done")


def _run_llava_recipe(cfg: LlavaRecipeConfig, out: Path, work: Path, done_dir: Path | None) -> dict:
    world = world_cache_dir(cfg.world_preset, cfg.seed)
    started = time.perf_counter()
    with atomic_directory(out) as stage:
        steps = plan_llava_steps(cfg, world, work)
        timings = run_steps(steps, work, world, cfg.seed, cfg.world_preset, done_dir=done_dir)
        for item in final_model_dir(cfg, work).iterdir():
            (shutil.copytree if item.is_dir() else shutil.copyfile)(item, stage / item.name)
        write_examples(world, stage / "examples", cfg.example_categories)
        metrics = {"eval": json.loads((work / "eval.json").read_text(encoding="utf-8")), "seconds": timings}
        commands = {s.name: printable_command(s.argv) for s in steps}
        atomic_write_text(stage / "README.md", model_card(cfg, metrics, commands))
        manifest = build_manifest(
            stage,
            producers={"": final_stage(cfg), "examples": "world"},
            commands=commands,
            metrics=metrics,
            # Step seconds add up across resumed runs; total_seconds is this invocation's wall time.
            recipe={
                "config": asdict(cfg),
                "total_seconds": round(time.perf_counter() - started, 1),
                "step_seconds_sum": round(sum(timings.values()), 1),
            },
        )
        if manifest["total_bytes"] > LLAVA_BUDGET_BYTES and cfg.world_preset != "tiny":
            raise RuntimeError(
                f"embedded model is {manifest['total_bytes']} bytes, over {LLAVA_BUDGET_BYTES}"
            )
        write_manifest(stage, manifest)
    return manifest
