"""The SynthWorld recipe: one command regenerates the world and its foundation models.

    python -m trainer.recipe synthworld             # full: <= 20 min on 2 CPU cores, writes assets/synthworld
    python -m trainer.recipe synthworld --reduced   # same steps on tiny presets, seconds (CI)

The recipe is a list of steps, each an argv list of one of the project's own CLIs run as a subprocess (never a
shell string). Running each step through its public CLI keeps the CLIs honest and lets the manifest record,
for every artifact, the exact command that produced it. Large data (the world itself) goes to a cache folder
and is regenerated on demand from its seed; only the small models and a few example scenes are committed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from trainer.synthworld.world import WORLD_FORMAT
from vision_common.atomic import atomic_directory, atomic_write_json
from vision_common.manifest import build_manifest, write_manifest
from vision_common.paths import PROJECT_ROOT

# Committed artifacts must stay small: the whole assets/ tree is budgeted at 25 MB.
ASSETS_BUDGET_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class RecipeConfig:
    """What the recipe builds and how long each training step may run.

    ``full()`` is the committed recipe (<= 20 minutes on 2 CPU cores); ``reduced()`` runs the same steps on the
    tiny presets in seconds, so CI exercises every code path of the recipe on every run.
    """

    world_preset: str = "default"
    model_preset: str = "default"
    seed: int = 0
    clip_minutes: float = 13.0
    lm_minutes: float = 5.0
    tokenizer_vocab: int = 2048
    n_examples: int = 6
    extra_flags: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.world_preset not in ("tiny", "default"):
            raise ValueError(f"world_preset must be 'tiny' or 'default', got {self.world_preset!r}")
        if self.model_preset not in ("tiny", "default"):
            raise ValueError(f"model_preset must be 'tiny' or 'default', got {self.model_preset!r}")
        if self.clip_minutes <= 0 or self.lm_minutes <= 0:
            raise ValueError("training budgets (clip_minutes, lm_minutes) must be positive")

    @classmethod
    def full(cls) -> RecipeConfig:
        return cls()

    @classmethod
    def reduced(cls) -> RecipeConfig:
        return cls(
            world_preset="tiny", model_preset="tiny", clip_minutes=0.5, lm_minutes=0.5, tokenizer_vocab=512
        )


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    outputs: list[str]  # paths relative to the staging root that this step produces
    # A trainer's --out: when it already holds a checkpoint (an interrupted build), the step reruns with
    # --resume and continues from it instead of starting over.
    resume_dir: Path | None = None


def world_cache_dir(preset: str, seed: int) -> Path:
    """Where a generated world lives (gitignored); regenerated from its seed when absent."""
    return PROJECT_ROOT / ".cache" / "synthworld" / f"{preset}-seed{seed}"


def world_step(world: Path, seed: int, preset: str) -> Step:
    """Generate the SynthWorld world (skipped by the runners when an identical one is cached)."""
    argv = [sys.executable, "-m", "trainer.synthworld", "generate", "--out", str(world), "--seed", str(seed)]
    return Step("world", [*argv, "--preset", preset], [])


def instruction_data_step(
    world: Path, instruct_out: Path, stage1_out: Path, seed: int, extra: Sequence[str] = ()
) -> Step:
    """Rule-teacher LLaVA instruction data and stage-1 captions from the world's training scenes; ``extra``
    are further ``trainer.data_engine build`` options (the LLaVA recipe's types and mix)."""
    ann = world / "scenes" / "annotations"
    argv = [sys.executable, "-m", "trainer.data_engine", "build"]
    argv += ["--captions", str(ann / "captions_train.json"), "--instances", str(ann / "instances_train.json")]
    argv += ["--images", str(world / "scenes" / "images" / "train"), "--out", str(instruct_out)]
    argv += ["--stage1-out", str(stage1_out), "--teacher", "rule", "--seed", str(seed), *extra]
    return Step("instruction-data", argv, [])


def run_steps(
    steps: list[Step], log_dir: Path, world: Path, seed: int, preset: str, *, done_dir: Path | None = None
) -> dict[str, float]:
    """Run steps in order (reusing a cached identical world); returns seconds per step.

    With ``done_dir`` the build is resumable by step: a finished step leaves ``<done_dir>/<name>.json`` with its
    argv and seconds, and a rerun skips it while its argv is unchanged and no earlier step ran again; a
    training step that was interrupted continues from its newest checkpoint (``Step.resume_dir``)."""
    timings: dict[str, float] = {}
    reran = False
    for step in steps:
        if step.name == "world" and world_is_current(world, seed, preset):
            print(f"[recipe] === world: reusing {world} (same seed and preset)", flush=True)
            timings[step.name] = 0.0
            continue
        marker = done_dir / f"{step.name}.json" if done_dir is not None else None
        done = _read_marker(marker) if marker is not None and not reran else None
        if done is not None and done.get("argv") == step.argv:
            print(
                f"[recipe] === {step.name}: done in an earlier run ({done['seconds']} s), skipped", flush=True
            )
            timings[step.name] = float(done["seconds"])
            continue
        argv = step.argv
        if step.resume_dir is not None and _has_checkpoint(step.resume_dir):
            if reran:  # an earlier step's output changed: this step's checkpoints are stale
                shutil.rmtree(step.resume_dir)
            else:  # the run that was interrupted in this step
                argv = [*argv, "--resume"]
        timings[step.name] = round(run_step(replace(step, argv=argv), log_dir), 1)
        reran = True
        if marker is not None:
            atomic_write_json(marker, {"argv": step.argv, "seconds": timings[step.name]})
    return timings


def _has_checkpoint(run_dir: Path) -> bool:
    # The trainer's checkpoint folders (trainer.runtime.checkpoint), looked up without importing torch.
    return any(path.is_dir() for path in (run_dir / "checkpoints").glob("step-*"))


def _read_marker(marker: Path) -> dict | None:
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "seconds" in data else None


def plan_steps(cfg: RecipeConfig, world: Path, work: Path, stage: Path) -> list[Step]:
    """The recipe's steps in order. ``work`` holds intermediates; ``stage`` becomes assets/."""
    py = sys.executable
    instr = work / "llava_instruct.json"
    stage1 = work / "llava_stage1.json"
    tok = stage / "models" / "synthworld-tokenizer"
    clip = stage / "models" / "synthworld-clip"
    lm = stage / "models" / "synthworld-lm"
    vision = work / "synthworld-clip-vision-hf"
    return [
        world_step(world, cfg.seed, cfg.world_preset),
        instruction_data_step(world, instr, stage1, cfg.seed),
        Step(
            "tokenizer",
            [
                py,
                "-m",
                "trainer.foundation.tokenizer",
                "--world",
                str(world),
                "--extra-json",
                str(instr),
                "--vocab-size",
                str(cfg.tokenizer_vocab),
                "--out",
                str(tok),
            ],
            ["models/synthworld-tokenizer"],
        ),
        Step(
            "clip",
            [
                py,
                "-m",
                "trainer.foundation.clip_train",
                "--world",
                str(world),
                "--tokenizer",
                str(tok),
                "--out",
                str(clip),
                "--preset",
                cfg.model_preset,
                "--max-minutes",
                str(cfg.clip_minutes),
                "--seed",
                str(cfg.seed),
            ],
            ["models/synthworld-clip"],
        ),
        Step(
            "clip-zeroshot",
            [
                py,
                "-m",
                "trainer.foundation.zeroshot",
                "--model",
                str(clip),
                "--world",
                str(world),
                "--json",
                "--out",
                str(work / "zeroshot.json"),
            ],
            [],
        ),
        Step(
            "clip-convert",
            [py, "-m", "trainer.foundation.convert_clip", "--open-clip", str(clip), "--out", str(vision)],
            [],
        ),
        Step(
            "lm",
            [
                py,
                "-m",
                "trainer.foundation.lm_pretrain",
                "--world",
                str(world),
                "--tokenizer",
                str(tok),
                "--extra-json",
                str(instr),
                "--out",
                str(lm),
                "--preset",
                cfg.model_preset,
                "--max-minutes",
                str(cfg.lm_minutes),
                "--seed",
                str(cfg.seed),
            ],
            ["models/synthworld-lm"],
        ),
        # Can the LM read a scene from its context (the lookup a LLaVA's answers need)? Seconds; recorded in
        # the manifest so every build states it (docs/foundation_models.md, "Scene reading").
        Step(
            "lm-reading",
            [py, "-m", "trainer.probes.lm_reading", "--lm", str(lm), "--world", str(world)]
            + ["--json", "--out", str(work / "lm_reading.json")],
            [],
        ),
    ]


def printable_command(argv: list[str]) -> str:
    """The command as a person would type it: repo-relative paths, `python` for the interpreter."""
    out = []
    for arg in argv:
        if arg == sys.executable:
            out.append("python")
            continue
        try:
            out.append(str(Path(arg).resolve().relative_to(PROJECT_ROOT)) if "/" in arg else arg)
        except ValueError:
            out.append(arg)
    return " ".join(out)


def run_step(step: Step, log_dir: Path) -> float:
    """Run one step; its output streams to the terminal and to ``log_dir/<name>.log``. Returns seconds."""
    print(f"\n[recipe] === {step.name}: {printable_command(step.argv)}", flush=True)
    t0 = time.perf_counter()
    log_path = log_dir / f"{step.name}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            step.argv,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"recipe step {step.name!r} failed with exit code {rc}; log: {log_path}")
    return time.perf_counter() - t0


def world_is_current(world: Path, seed: int, preset: str) -> bool:
    """A generated world is reusable when its manifest records the same seed, preset and generator format (it
    is deterministic; a world from older generator code is regenerated)."""
    manifest = world / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("seed") == seed and meta.get("preset") == preset and meta.get("format") == WORLD_FORMAT


def copy_examples(world: Path, stage: Path, n: int) -> list[Path]:
    """A few held-out scenes with their questions, for the app's examples and the docs."""
    eval_file = world / "eval" / "vqa.jsonl"
    dest = stage / "examples"
    dest.mkdir(parents=True, exist_ok=True)
    picked: list[dict] = []
    seen: set[str] = set()
    for line in eval_file.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        if item["image"] in seen:
            continue
        seen.add(item["image"])
        picked.append(item)
        if len(picked) == n:
            break
    examples = []
    for i, item in enumerate(picked):
        src = (world / "eval" / item["image"]).resolve()
        if not src.exists():
            src = (world / item["image"]).resolve()
        name = f"scene_{i}.png"
        shutil.copyfile(src, dest / name)
        examples.append(
            {
                "image": name,
                "question": item["text"],
                "answer": item["answer"],
                "category": item.get("category"),
            }
        )
    (dest / "examples.json").write_text(json.dumps(examples, indent=1) + "\n", encoding="utf-8")
    return [dest / e["image"] for e in examples]


def run_recipe(cfg: RecipeConfig, out: Path, *, world: Path | None = None) -> dict:
    """Run every step and atomically replace ``out`` (normally assets/) with the new artifacts + manifest."""
    world = world or world_cache_dir(cfg.world_preset, cfg.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recipe-work-") as work_str, atomic_directory(out) as stage:
        work = Path(work_str)
        steps = plan_steps(cfg, world, work, stage)
        timings = run_steps(steps, work, world, cfg.seed, cfg.world_preset)
        copy_examples(world, stage, cfg.n_examples)
        metrics = {
            "zeroshot": json.loads((work / "zeroshot.json").read_text(encoding="utf-8")),
            "seconds": timings,
        }
        lm_metrics = stage / "models" / "synthworld-lm" / "metrics.json"
        if lm_metrics.exists():
            metrics["lm"] = json.loads(lm_metrics.read_text(encoding="utf-8"))
        reading = json.loads((work / "lm_reading.json").read_text(encoding="utf-8"))
        # Drop the LM's staging path (gone after the swap); the manifest already names the LM's files.
        reading.pop("lm", None)
        metrics["lm_reading"] = reading
        commands = {s.name: printable_command(s.argv) for s in steps}
        producers = {o: s.name for s in steps for o in s.outputs}
        producers["examples"] = "world"
        manifest = build_manifest(
            stage,
            producers=producers,
            commands=commands,
            metrics=metrics,
            recipe={"config": asdict(cfg), "total_seconds": round(time.perf_counter() - started, 1)},
        )
        if manifest["total_bytes"] > ASSETS_BUDGET_BYTES:
            raise RuntimeError(
                f"assets are {manifest['total_bytes']} bytes, over the "
                f"{ASSETS_BUDGET_BYTES}-byte budget; shrink the models before committing"
            )
        write_manifest(stage, manifest)
    return manifest
