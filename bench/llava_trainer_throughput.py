"""Benchmark: the LLaVA trainer's samples/s against a bare forward/backward loop over the same batches.

    python -m bench.llava_trainer_throughput [--model assets/models/synthworld-llava-next]
        [--world .cache/synthworld/default-seed0 --limit-images 60 | --data JSON --images DIR]
        [--preset synthworld] [--stage 2] [--updates 12] [--warmup 2] [--rounds 2] [--threads 1]
        [--num-workers N] [--json-out results.json]

Arms, in one process so load from other processes hits them alike (rounds alternate the order: T B, B T, ...):

* ``trainer``: ``trainer.runtime.loop.run_training`` on the job ``trainer.llava.train`` builds (its DataLoader,
  lazy image decode + AnyRes preprocessing, collator, length-grouped plan, AdamW + clipping + scheduler,
  metrics.jsonl, tqdm; one checkpoint at the end, outside the timed window). Timed by the trainer's own
  ``elapsed_s`` in metrics.jsonl, from the end of the last warmup update to the end of the last update.
* ``bare``: the same first micro-batches of the same plan, collated into memory once, then only
  forward, backward, ``optimizer.step`` and ``zero_grad`` (same AdamW groups, no clipping, no scheduler).
* ``dataloader``: the trainer's DataLoader alone over those batches (what the bare arm then reuses).

Both model arms start from a fresh copy of the same weights, so their first-update losses must agree (checked:
it proves they see the same batch). Rates exclude the ``warmup`` updates of every round; the ratio is
trainer samples/s over bare samples/s, summed over rounds.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from trainer.llava.assemble import AssemblyError, LlavaParts, load_llava
from trainer.llava.config import PRESETS, ConfigError, StageConfig, stage_preset
from trainer.llava.data import DataError, LlavaDataset
from trainer.llava.stages import compute_loss, configure_stage, set_train_mode
from trainer.llava.train import build_job, dataset_for
from trainer.runtime.data_order import DataOrder, DataPosition
from trainer.runtime.loop import METRICS_NAME, TrainJob, make_accelerator, run_training
from trainer.runtime.schedule import build_optimizer
from vision_common.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "assets" / "models" / "synthworld-llava-next"
DEFAULT_WORLD = ROOT / ".cache" / "synthworld" / "default-seed0"


class BenchError(ValueError):
    """The bench cannot run as asked; the message names the option or the file."""


@dataclass(frozen=True)
class ThroughputBenchConfig:
    """What to time: ``updates`` measured updates per arm per round, after ``warmup`` untimed ones."""

    preset: str = "synthworld"
    stage: int = 2
    # Many short rounds rather than a few long ones: on a shared machine the load changes within a minute, and
    # alternating arms every few updates lets both see the same mix (one update here is ~1.5 s).
    updates: int = 5
    warmup: int = 1
    rounds: int = 8
    threads: int = 1
    # None: the preset's DataLoader workers (0 for every preset: loading runs in the training process).
    num_workers: int | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise BenchError(f"preset must be one of {PRESETS}, got {self.preset!r}")
        if self.updates < 1 or self.rounds < 1 or self.threads < 1:
            raise BenchError("updates, rounds and threads must be >= 1")
        # The trainer's clock starts at its first update; the timed window opens at the end of a warmup one.
        if self.warmup < 1:
            raise BenchError(
                f"warmup must be >= 1 (the timed window starts after a warmup update), got {self.warmup}"
            )
        if self.num_workers is not None and self.num_workers < 0:
            raise BenchError(f"num_workers must be >= 0, got {self.num_workers}")

    @classmethod
    def tiny(cls) -> ThroughputBenchConfig:
        return cls(preset="tiny", updates=2, warmup=1, rounds=2)

    @property
    def batches_per_round(self) -> int:
        return self.warmup + self.updates

    def stage_config(self) -> StageConfig:
        cfg = stage_preset(self.preset, self.stage)
        changes: dict[str, Any] = {"max_steps": self.batches_per_round, "checkpoint_every": 0}
        if self.num_workers is not None:
            changes["num_workers"] = self.num_workers
        return cfg.with_runtime(**changes)


@dataclass(frozen=True)
class ArmTiming:
    arm: str
    round: int
    samples: int
    tokens: int
    seconds: float
    first_loss: float | None = None

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds

    @classmethod
    def of_batches(
        cls, arm: str, round_: int, timed: Sequence[dict[str, torch.Tensor]], seconds: float, **extra: Any
    ) -> ArmTiming:
        samples = sum(int(batch["input_ids"].shape[0]) for batch in timed)
        tokens = sum(int(batch["attention_mask"].sum()) for batch in timed)
        return cls(arm=arm, round=round_, samples=samples, tokens=tokens, seconds=seconds, **extra)


def build_instruction_data(world: Path, limit_images: int, out_dir: Path) -> tuple[Path, Path]:
    """SynthWorld rule-teacher instruction data for the first ``limit_images`` training scenes (the recipe's step)."""
    annotations, images = world / "scenes" / "annotations", world / "scenes" / "images" / "train"
    if not (annotations / "captions_train.json").is_file():
        raise BenchError(
            f"--world {world}: no scenes/annotations/captions_train.json (generate the world first)"
        )
    out = out_dir / "llava_instruct.json"
    argv = [sys.executable, "-m", "trainer.data_engine", "build", "--teacher", "rule", "--seed", "0"]
    argv += ["--captions", str(annotations / "captions_train.json")]
    argv += ["--instances", str(annotations / "instances_train.json"), "--images", str(images)]
    argv += ["--out", str(out), "--limit", str(limit_images)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"building instruction data from {world} failed:\n{done.stderr[-2000:]}")
    return out, images


def plan_batches(job: TrainJob, cfg: StageConfig, count: int) -> list[list[int]]:
    """The first ``count`` micro-batches a single-process run of ``job`` takes (the trainer's data order)."""
    batches = DataOrder(job.plan_epoch, grad_accum=cfg.runtime.grad_accum).rank_batches(DataPosition())
    if len(batches) < count:
        raise BenchError(
            f"the data gives {len(batches)} micro-batches in one epoch, fewer than warmup + updates = {count}; "
            "use more images (--limit-images) or fewer updates"
        )
    return [list(batch) for batch in batches[:count]]


def time_dataloader(
    dataset: LlavaDataset, collate: Any, batches: list[list[int]], num_workers: int, warmup: int, round_: int
) -> tuple[list[dict[str, torch.Tensor]], ArmTiming]:
    """Iterate the trainer's DataLoader over ``batches``; keep the collated batches for the bare arm."""
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    collated, stamps = [], [time.perf_counter()]
    for batch in loader:
        collated.append(batch)
        stamps.append(time.perf_counter())
    timing = ArmTiming.of_batches("dataloader", round_, collated[warmup:], stamps[-1] - stamps[warmup])
    return collated, timing


def time_bare(
    model: torch.nn.Module,
    cfg: StageConfig,
    collated: list[dict[str, torch.Tensor]],
    warmup: int,
    round_: int,
) -> ArmTiming:
    """Forward, backward, optimizer.step, zero_grad over in-memory batches; nothing else."""
    groups = configure_stage(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optimizer(groups, names, cfg.runtime)
    set_train_mode(model)
    first_loss, started = None, time.perf_counter()
    for index, batch in enumerate(collated):
        if index == warmup:
            started = time.perf_counter()
        loss = compute_loss(model, batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index == 0:
            first_loss = float(loss.detach())
    seconds = time.perf_counter() - started
    return ArmTiming.of_batches("bare", round_, collated[warmup:], seconds, first_loss=first_loss)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(lines, key=lambda record: record["step"])


def time_trainer(
    parts: LlavaParts,
    dataset: LlavaDataset,
    cfg: StageConfig,
    collated: list[dict[str, torch.Tensor]],
    accelerator: Any,
    warmup: int,
    round_: int,
) -> ArmTiming:
    """A real ``run_training`` of warmup + updates updates, timed by its own metrics.jsonl clock."""
    job = build_job(parts, dataset, cfg, {"bench": "llava_trainer_throughput", "round": round_})
    with tempfile.TemporaryDirectory(prefix="bench-llava-trainer-") as out:
        result = run_training(job, cfg.runtime, out, accelerator=accelerator, progress=True)
        metrics = read_metrics(Path(out) / METRICS_NAME)
    if not result.finished or [m["step"] for m in metrics] != list(range(1, len(collated) + 1)):
        raise BenchError(f"trainer run ended at step {result.step} of {len(collated)} ({result.stop_reason})")
    # Samples and tokens of an update are those of its micro-batch; the plan is the one the bare arm replays.
    seconds = metrics[-1]["elapsed_s"] - metrics[warmup - 1]["elapsed_s"]
    return ArmTiming.of_batches(
        "trainer", round_, collated[warmup:], seconds, first_loss=float(metrics[0]["loss"])
    )


def run_bench(bench: ThroughputBenchConfig, parts: LlavaParts, dataset: LlavaDataset) -> list[ArmTiming]:
    """All rounds; odd rounds run the bare arm first so neither arm always follows the other."""
    cfg = bench.stage_config()
    if cfg.runtime.grad_accum != 1:
        raise BenchError("the bench replays one micro-batch per update; use a preset with grad_accum 1")
    # The job of the trainer CLI, built once for its plan and collator (each arm then gets its own model copy).
    job = build_job(parts, dataset, cfg, {})
    batches = plan_batches(job, cfg, bench.batches_per_round)
    accelerator = make_accelerator(cfg.runtime)
    timings: list[ArmTiming] = []
    for round_ in range(bench.rounds):
        collated, loader_timing = time_dataloader(
            dataset, job.collate, batches, cfg.runtime.num_workers, bench.warmup, round_
        )
        timings.append(loader_timing)
        arms = ("trainer", "bare") if round_ % 2 == 0 else ("bare", "trainer")
        for arm in arms:
            model_copy = LlavaParts(model=copy.deepcopy(parts.model), processor=parts.processor)
            if arm == "bare":
                timings.append(time_bare(model_copy.model, cfg, collated, bench.warmup, round_))
            else:
                timings.append(
                    time_trainer(model_copy, dataset, cfg, collated, accelerator, bench.warmup, round_)
                )
    return timings


def round_ratios(timings: Sequence[ArmTiming]) -> list[float]:
    """Trainer over bare samples/s within each round (the two arms ran next to each other in time)."""
    rate = {(t.round, t.arm): t.samples_per_s for t in timings}
    rounds = sorted({t.round for t in timings})
    return [rate[(r, "trainer")] / rate[(r, "bare")] for r in rounds]


def summarise(timings: Sequence[ArmTiming], updates_per_round: int) -> dict[str, Any]:
    """Totals per arm over all rounds, the trainer/bare ratio, and the DataLoader's headroom over compute."""
    arms: dict[str, Any] = {}
    for arm in ("trainer", "bare", "dataloader"):
        rows = [t for t in timings if t.arm == arm]
        samples, tokens, seconds = (
            sum(getattr(t, key) for t in rows) for key in ("samples", "tokens", "seconds")
        )
        batches = updates_per_round * len(rows)
        arms[arm] = {
            "batches": batches,
            "samples": samples,
            "tokens": tokens,
            "seconds": seconds,
            "samples_per_s": samples / seconds,
            "batches_per_s": batches / seconds,
            "ms_per_batch": 1e3 * seconds / batches,
        }
    first_losses = [t.first_loss for t in timings if t.first_loss is not None]
    return {
        "arms": arms,
        "ratio_trainer_over_bare": arms["trainer"]["samples_per_s"] / arms["bare"]["samples_per_s"],
        "round_ratios": round_ratios(timings),
        "median_round_ratio": statistics.median(round_ratios(timings)),
        "dataloader_headroom_over_bare": arms["dataloader"]["batches_per_s"] / arms["bare"]["batches_per_s"],
        "trainer_overhead_ms_per_update": arms["trainer"]["ms_per_batch"] - arms["bare"]["ms_per_batch"],
        "first_loss_max_abs_diff": max(first_losses) - min(first_losses),
    }


def format_table(summary: dict[str, Any], timings: Sequence[ArmTiming]) -> str:
    lines = ["round  arm         samples  seconds  samples/s"]
    lines += [
        f"{t.round:5d}  {t.arm:<10} {t.samples:8d} {t.seconds:8.2f} {t.samples_per_s:10.2f}" for t in timings
    ]
    lines.append("arm         samples/s  batches/s  ms/batch")
    for arm, row in summary["arms"].items():
        lines.append(
            f"{arm:<10} {row['samples_per_s']:10.2f} {row['batches_per_s']:10.3f} {row['ms_per_batch']:9.1f}"
        )
    lines.append(f"ratio trainer/bare samples/s: {summary['ratio_trainer_over_bare']:.3f} (target >= 0.9)")
    per_round = " ".join(f"{ratio:.2f}" for ratio in summary["round_ratios"])
    lines.append(f"per-round ratios: {per_round} (median {summary['median_round_ratio']:.3f})")
    lines.append(
        f"DataLoader headroom (its batches/s over bare updates/s): {summary['dataloader_headroom_over_bare']:.1f}x"
    )
    lines.append(f"trainer overhead per update: {summary['trainer_overhead_ms_per_update']:.1f} ms")
    return "\n".join(lines)


def load_inputs(
    args: argparse.Namespace, cfg: StageConfig, scratch: Path
) -> tuple[LlavaParts, LlavaDataset, dict[str, Any]]:
    if args.data is not None and args.images is None:
        raise BenchError("--data needs --images (the folder its image paths are under)")
    if args.data is None and args.images is not None:
        raise BenchError("--images goes with --data; without --data the bench builds data from --world")
    if args.data is None:
        data, images = build_instruction_data(args.world, args.limit_images, scratch)
        source = f"{args.world} (rule teacher, first {args.limit_images} training scenes)"
    else:
        data, images, source = args.data, args.images, str(args.data)
    parts = load_llava(args.model)
    dataset, report = dataset_for(parts, data, images, cfg)
    return parts, dataset, {"data": source, **report.to_dict()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.llava_trainer_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="LLaVA-NeXT directory (default: embedded)"
    )
    parser.add_argument(
        "--world", type=Path, default=DEFAULT_WORLD, help="SynthWorld folder to build data from"
    )
    parser.add_argument(
        "--limit-images", type=int, default=60, help="training scenes to build data from (7 records each)"
    )
    parser.add_argument("--data", type=Path, help="LLaVA JSON to use instead of building from --world")
    parser.add_argument("--images", type=Path, help="folder the --data image paths are under")
    defaults = ThroughputBenchConfig()
    parser.add_argument("--preset", choices=PRESETS, default=defaults.preset, help="trainer preset")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=defaults.stage)
    parser.add_argument(
        "--updates", type=int, default=defaults.updates, help="timed updates per arm per round"
    )
    parser.add_argument(
        "--warmup", type=int, default=defaults.warmup, help="untimed updates per arm per round"
    )
    parser.add_argument("--rounds", type=int, default=defaults.rounds, help="rounds (arm order alternates)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch intra-op threads")
    parser.add_argument("--num-workers", type=int, help="DataLoader workers (default: the preset's)")
    parser.add_argument("--json-out", type=Path, help="also write the results here (atomically)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        bench = ThroughputBenchConfig(
            preset=args.preset,
            stage=args.stage,
            updates=args.updates,
            warmup=args.warmup,
            rounds=args.rounds,
            threads=args.threads,
            num_workers=args.num_workers,
        )
        torch.set_num_threads(bench.threads)
        cfg = bench.stage_config()
        with tempfile.TemporaryDirectory(prefix="bench-llava-data-") as scratch:
            parts, dataset, data_report = load_inputs(args, cfg, Path(scratch))
            timings = run_bench(bench, parts, dataset)
    except (BenchError, ConfigError, DataError, AssemblyError, ValueError) as exc:
        parser.error(str(exc))
    summary = summarise(timings, bench.updates)
    environment = {
        "bench": asdict(bench),
        "micro_batch_size": cfg.micro_batch_size,
        "num_workers": cfg.runtime.num_workers,
        "model": str(args.model),
        "data": data_report,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "transformers": importlib.metadata.version("transformers"),
    }
    print(", ".join(f"{key}={value}" for key, value in environment.items() if key != "data"))
    print(f"data: {data_report['samples']} samples from {data_report['data']}")
    print(format_table(summary, timings))
    if args.json_out:
        rows = [{**asdict(t), "samples_per_s": t.samples_per_s} for t in timings]
        atomic_write_json(args.json_out, {"environment": environment, "rounds": rows, **summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
