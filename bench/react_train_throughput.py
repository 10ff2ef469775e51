"""Benchmark: REACT customization samples/s against a bare forward/backward loop over the same batches.

    python -m bench.react_train_throughput [--base assets/synthworld/models/synthworld-clip]
        [--subset .cache/synthworld/default-seed0/pool/pool.parquet] [--limit 1024] [--strategy gated-image]
        [--batch 64] [--updates 12] [--warmup 2] [--rounds 2] [--warmup-rounds 1] [--threads 2] [--decode-arm]
        [--json-out results.json]

Arms, in one process so load from other processes hits them alike (each round rotates the order: R B, B R, ...
or R B D, B D R, D R B with ``--decode-arm``):

* ``react``: ``trainer.runtime.loop.run_training`` on the job ``trainer.react.train`` builds, over the dataset
  its ``build_dataset`` builds (captions tokenised once; the subset decoded and transformed once before
  training when it fits ``--preload-max-mb``, the trainer's default, else PNG decode per batch; the evaluation
  transform), the seeded plan, the gamma-positive loss with the logit-scale clamp, AdamW + clipping +
  scheduler, metrics.jsonl, tqdm off; the checkpoint at the end is outside the timed window. Timed by the
  runtime's own ``elapsed_s``, from the end of the last warm-up update to the last update. The one-time
  preload is outside both arms and reported as ``preload``.
* ``bare``: the same micro-batches of the same plan, collated into memory once, then only forward, the same
  loss, backward, ``optimizer.step`` and ``zero_grad`` (AdamW over the same parameters; no clipping, no
  scheduler, no clamp, no logging), with the same train/eval modes as the trainer (frozen towers in eval mode:
  a bare loop with everything in train mode was measured ~7 % slower on the tiny CLIP, which flattered the
  react arm).
* ``react-decode`` (``--decode-arm``): the react arm with the preload off (PNG decode + transform per batch,
  what the trainer did before it preloaded), to measure what the preload buys in the same run.

One untimed round of every arm comes first (``--warmup-rounds``): without it the first arm the process ran was
~20 % slower in every run (allocator and kernel warm-up), a bias against whichever arm goes first.

All arms start from copies of the same customized model, so their first losses agree (checked). The ratio is
react samples/s over bare samples/s, each averaged over all rounds (target >= 0.9); per-round ratios and their
median are printed too (one slow round of a loaded machine moves the mean), and the same ratio per CPU second of
this process (``cpu_ratio_react_over_bare``: the arms are single-threaded with ``--threads 1``, so the CPU time
between the starts of the timed updates is what they cost, however little of the cores other jobs leave).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from react_explorer.customized.model_dir import load_base
from trainer.react.config import STRATEGIES, AugmentConfig, react_preset
from trainer.react.data import collate_pairs, read_subset, shuffled_batches
from trainer.react.loss import gamma_positive_loss
from trainer.react.strategies import train_mode_for
from trainer.react.train import build_dataset, build_job, prepare_model
from trainer.runtime.loop import METRICS_NAME, make_accelerator, run_training
from trainer.runtime.metrics import read_metrics
from vision_common.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = ROOT / "assets" / "synthworld" / "models" / "synthworld-clip"
DEFAULT_SUBSET = ROOT / ".cache" / "synthworld" / "default-seed0" / "pool" / "pool.parquet"


def cpu_per_update(starts: Sequence[float], warmup: int) -> float:
    """Process CPU seconds per update between the starts of updates ``warmup`` and the last one.

    The arms run single-threaded (``--threads 1``, no workers), so this is the work an update costs, whatever
    share of the cores the other processes on a loaded machine leave (wall-clock rates are not).
    """
    return (starts[-1] - starts[warmup]) / (len(starts) - 1 - warmup)


def time_react(bundle, dataset, cfg, updates: int, warmup: int) -> tuple[float, float, float]:
    """(samples/s after warm-up, first loss, CPU s per update) of the runtime loop on a fresh copy of the model."""
    fresh = copy.deepcopy(bundle)
    job = build_job(fresh, dataset, cfg, {"bench": "react"})
    starts: list[float] = []
    compute_loss = job.compute_loss

    def timed_compute_loss(model, batch):  # one call per update (grad_accum 1)
        starts.append(time.process_time())
        return compute_loss(model, batch)

    job.compute_loss = timed_compute_loss
    with tempfile.TemporaryDirectory() as out:
        run_training(job, cfg.runtime, out, accelerator=make_accelerator(cfg.runtime), progress=False)
        metrics = read_metrics(Path(out) / METRICS_NAME)
    seconds = metrics[-1]["elapsed_s"] - metrics[warmup - 1]["elapsed_s"]
    rate = (updates - warmup) * cfg.micro_batch_size / seconds
    return rate, metrics[0]["loss"], cpu_per_update(starts, warmup)


def time_bare(bundle, batches: Sequence[dict], cfg, warmup: int) -> tuple[float, float, float]:
    fresh = copy.deepcopy(bundle)
    model = fresh.model
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.runtime.learning_rate
    )
    train_mode_for(cfg.strategy)(model)  # the modes the trainer sets (frozen towers in eval mode)
    first, start, starts = None, None, []
    for index, batch in enumerate(batches):
        starts.append(time.process_time())
        if index == warmup:
            start = time.perf_counter()
        image, text, scale = model(image=batch["images"], text=batch["texts"])
        loss = gamma_positive_loss(image, text, scale, cfg.gamma)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        first = loss.item() if first is None else first
    seconds = time.perf_counter() - start
    return (len(batches) - warmup) * cfg.micro_batch_size / seconds, first, cpu_per_update(starts, warmup)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.react_train_throughput", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--base", default=str(DEFAULT_BASE))
    parser.add_argument("--subset", type=Path, default=DEFAULT_SUBSET)
    parser.add_argument("--limit", type=int, default=1024, help="pairs of the subset to use")
    parser.add_argument("--strategy", choices=STRATEGIES, default="gated-image")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--updates", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup-rounds", type=int, default=1,
                        help="untimed rounds of every arm first (the process's first arm ran ~20 %% slow)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--num-workers", type=int, default=0, help="decode processes of the react arm's DataLoader"
    )
    parser.add_argument(
        "--preload-max-mb",
        type=int,
        help="the trainer's preload budget (default: the preset's; 0: decode per batch)",
    )
    parser.add_argument(
        "--decode-arm",
        action="store_true",
        help="also time the react arm decoding PNGs per batch (no preload)",
    )
    parser.add_argument("--json-out", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.warmup < args.updates - 1:
        print("error: need 0 < --warmup < --updates - 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = react_preset("synthworld", args.strategy)
    cfg = cfg.with_runtime(
        max_steps=args.updates, warmup_ratio=0.0, checkpoint_every=0, num_workers=args.num_workers
    )
    cfg = replace(cfg, micro_batch_size=args.batch, augment=AugmentConfig.off())
    if args.preload_max_mb is not None:
        cfg = replace(cfg, preload_max_mb=args.preload_max_mb)
    pairs, _ = read_subset([args.subset])
    pairs = pairs[: args.limit]
    torch.manual_seed(0)
    bundle = prepare_model(load_base(args.base), cfg)
    dataset, preload = build_dataset(pairs, bundle, cfg)
    plan = shuffled_batches(len(dataset), args.batch, seed=cfg.runtime.seed, epoch=0)[: args.updates]
    if len(plan) < args.updates:
        print(
            f"error: {len(pairs)} pairs give {len(plan)} batches of {args.batch}; need --updates",
            file=sys.stderr,
        )
        return 2
    batches = [collate_pairs([dataset[i] for i in batch]) for batch in plan]
    arms = ["react", "bare"]
    if args.decode_arm:
        decode_dataset, _ = build_dataset(pairs, bundle, replace(cfg, preload_max_mb=0))
        arms.append("react-decode")
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    cpu: dict[str, list[float]] = {arm: [] for arm in arms}
    firsts: dict[str, float] = {}
    for round_index in range(-args.warmup_rounds, args.rounds):
        shift = round_index % len(arms)
        for arm in arms[shift:] + arms[:shift]:
            if arm == "bare":
                rate, first, cpu_s = time_bare(bundle, batches, cfg, args.warmup)
            else:
                data = dataset if arm == "react" else decode_dataset
                rate, first, cpu_s = time_react(bundle, data, cfg, args.updates, args.warmup)
            firsts[arm] = first
            if round_index >= 0:
                rates[arm].append(rate)
                cpu[arm].append(cpu_s)
    if max(firsts.values()) - min(firsts.values()) > 1e-4 * max(1.0, abs(firsts["bare"])):
        print(f"error: first losses differ ({firsts}); the arms did not see the same batch", file=sys.stderr)
        return 1
    round_ratios = [r / b for r, b in zip(rates["react"], rates["bare"], strict=True)]
    summary: dict[str, Any] = {
        "strategy": args.strategy,
        "batch": args.batch,
        "updates_timed_per_round": args.updates - args.warmup,
        "rounds": args.rounds,
        "warmup_rounds": args.warmup_rounds,
        "threads": args.threads,
        "num_workers": args.num_workers,
        "preload": preload.to_dict(),
        **{f"{arm.replace('-', '_')}_samples_per_s": statistics.mean(rates[arm]) for arm in arms},
        **{f"{arm.replace('-', '_')}_cpu_s_per_update": statistics.mean(cpu[arm]) for arm in arms},
        "round_ratios": round_ratios,
        "median_round_ratio": statistics.median(round_ratios),
        "first_loss": firsts["bare"],
    }
    summary["ratio_react_over_bare"] = summary["react_samples_per_s"] / summary["bare_samples_per_s"]
    # Samples per CPU second, react over bare: the same comparison, immune to the machine's other load.
    summary["cpu_ratio_react_over_bare"] = (
        summary["bare_cpu_s_per_update"] / summary["react_cpu_s_per_update"]
    )
    if args.decode_arm:
        summary["cpu_ratio_react_decode_over_bare"] = (
            summary["bare_cpu_s_per_update"] / summary["react_decode_cpu_s_per_update"]
        )
    if args.decode_arm:
        summary["ratio_react_decode_over_bare"] = (
            summary["react_decode_samples_per_s"] / summary["bare_samples_per_s"]
        )
    if args.json_out is not None:
        atomic_write_json(args.json_out, summary)
    print(json.dumps(summary, indent=1))
    if args.decode_arm:
        print(
            f"ratio react-decode/bare samples/s: {summary['ratio_react_decode_over_bare']:.3f} "
            f"(per CPU second {summary['cpu_ratio_react_decode_over_bare']:.3f})"
        )
    print(
        f"ratio react/bare samples/s: {summary['ratio_react_over_bare']:.3f} "
        f"(median of rounds {summary['median_round_ratio']:.3f}; per CPU second "
        f"{summary['cpu_ratio_react_over_bare']:.3f}; target >= 0.9)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
