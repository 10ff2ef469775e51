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
    eval_limit: int = 60
    # The stage-2 mix (docs/data_engine.md): one academic VQA record per image (short answers, balanced
    # yes/no probes, small details, multiple choice) plus LLaVA's three teacher types on a share of the images.
    data_types: str = "conversation,detail,complex,academic"
    data_fractions: str = "conversation=0.3,detail=0.3,complex=0.2"

    def __post_init__(self) -> None:
        if self.world_preset not in ("tiny", "default", "simple"):
            raise ValueError(f"world_preset must be 'tiny', 'default' or 'simple', got {self.world_preset!r}")
        if self.eval_limit < 1:
            raise ValueError("eval_limit must be >= 1")

    @classmethod
    def full(cls) -> LlavaRecipeConfig:
        return cls()

    @classmethod
    def reduced(cls) -> LlavaRecipeConfig:
        return cls(
            world_preset="tiny",
            trainer_preset="tiny",
            foundation=".cache/assets-reduced",
            stage1_steps=2,
            stage2_steps=2,
            eval_limit=4,
        )


def plan_llava_steps(cfg: LlavaRecipeConfig, world: Path, work: Path) -> list[Step]:
    py = sys.executable
    models = (PROJECT_ROOT / cfg.foundation / "models").resolve()
    images = world / "scenes" / "images" / "train"
    instr, stage1 = work / "llava_instruct.json", work / "llava_stage1.json"
    vision = work / "clip-vision-hf"

    def train(stage: int, extra: list[str]) -> list[str]:
        data = stage1 if stage == 1 else instr
        argv = [py, "-m", "trainer.llava.train", "--config", cfg.trainer_preset, "--stage", str(stage)]
        argv += ["--data", str(data), "--images", str(images), "--out", str(work / f"stage{stage}")]
        argv += ["--seed", str(cfg.seed), "--no-progress", *extra]
        steps = cfg.stage1_steps if stage == 1 else cfg.stage2_steps
        return argv + (["--max-steps", str(steps)] if steps else [])

    stage1_parts = ["--vision-tower", str(vision), "--language-model", str(models / "synthworld-lm")]
    stage1_parts += ["--tokenizer", str(models / "synthworld-tokenizer")]
    if cfg.anyres_grids:
        stage1_parts += ["--anyres-grids", cfg.anyres_grids]
    return [
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
        Step("stage1", train(1, stage1_parts), [], resume_dir=work / "stage1"),
        Step("stage2", train(2, ["--init", str(work / "stage1" / "final")]), [], resume_dir=work / "stage2"),
        Step(
            "eval",
            [
                py,
                "-m",
                "trainer.eval",
                "llava",
                "--model",
                str(work / "stage2" / "final"),
                "--world",
                str(world),
            ]
            + ["--limit", str(cfg.eval_limit), "--json", "--out", str(work / "eval.json"), "--no-progress"],
            [],
        ),
    ]


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
        "rule-teacher instruction data (conversation, detail, complex reasoning, short answers, multiple choice).",
        "",
        "## Held-out SynthWorld metrics (`python -m trainer.eval llava`)",
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
        for item in (work / "stage2" / "final").iterdir():
            (shutil.copytree if item.is_dir() else shutil.copyfile)(item, stage / item.name)
        metrics = {"eval": json.loads((work / "eval.json").read_text(encoding="utf-8")), "seconds": timings}
        commands = {s.name: printable_command(s.argv) for s in steps}
        atomic_write_text(stage / "README.md", model_card(cfg, metrics, commands))
        manifest = build_manifest(
            stage,
            producers={"": "stage2"},
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
