"""Benchmark: REACT customization samples/s against a bare forward/backward loop over the same batches.

    python -m bench.react_train_throughput [--base assets/synthworld/models/synthworld-clip]
        [--subset .cache/synthworld/default-seed0/pool/pool.parquet] [--limit 1024] [--strategy gated-image]
        [--batch 64] [--updates 12] [--warmup 2] [--rounds 2] [--threads 2] [--json-out results.json]

Arms, in one process so load from other processes hits them alike (rounds alternate the order: R B, B R, ...):

* ``react``: ``trainer.runtime.loop.run_training`` on the job ``trainer.react.train`` builds (DataLoader with
  lazy PNG decode and the evaluation transform, the seeded plan, the gamma-positive loss with the logit-scale
  clamp, AdamW + clipping + scheduler, metrics.jsonl, tqdm off; the checkpoint at the end is outside the timed
  window). Timed by the runtime's own ``elapsed_s``, from the end of the last warm-up update to the last update.
* ``bare``: the same micro-batches of the same plan, collated into memory once, then only forward, the same
  loss, backward, ``optimizer.step`` and ``zero_grad`` (AdamW over the same parameters; no clipping, no
  scheduler, no clamp, no logging).

Both arms start from copies of the same customized model, so their first losses agree (checked). The ratio is
react samples/s over bare samples/s over all rounds (target >= 0.9).
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
from trainer.react.data import PairDataset, collate_pairs, read_subset, shuffled_batches
from trainer.react.loss import gamma_positive_loss
from trainer.react.train import build_job, prepare_model, tokenize_all
from trainer.runtime.loop import METRICS_NAME, make_accelerator, run_training
from trainer.runtime.metrics import read_metrics
from vision_common.atomic import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE = ROOT / "assets" / "synthworld" / "models" / "synthworld-clip"
DEFAULT_SUBSET = ROOT / ".cache" / "synthworld" / "default-seed0" / "pool" / "pool.parquet"


def time_react(bundle, dataset, cfg, updates: int, warmup: int) -> tuple[float, float]:
    """(samples/s after warm-up, first loss) of the runtime loop on a fresh copy of the model."""
    fresh = copy.deepcopy(bundle)
    job = build_job(fresh, dataset, cfg, {"bench": "react"})
    with tempfile.TemporaryDirectory() as out:
        run_training(job, cfg.runtime, out, accelerator=make_accelerator(cfg.runtime), progress=False)
        metrics = read_metrics(Path(out) / METRICS_NAME)
    seconds = metrics[-1]["elapsed_s"] - metrics[warmup - 1]["elapsed_s"]
    return (updates - warmup) * cfg.micro_batch_size / seconds, metrics[0]["loss"]


def time_bare(bundle, batches: Sequence[dict], cfg, warmup: int) -> tuple[float, float]:
    fresh = copy.deepcopy(bundle)
    model = fresh.model
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg.runtime.learning_rate
    )
    model.train()
    first, start = None, None
    for index, batch in enumerate(batches):
        if index == warmup:
            start = time.perf_counter()
        image, text, scale = model(image=batch["images"], text=batch["texts"])
        loss = gamma_positive_loss(image, text, scale, cfg.gamma)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        first = loss.item() if first is None else first
    seconds = time.perf_counter() - start
    return (len(batches) - warmup) * cfg.micro_batch_size / seconds, first


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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--num-workers", type=int, default=0, help="decode processes of the react arm's DataLoader"
    )
    parser.add_argument("--json-out", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.warmup < args.updates:
        print("error: need 0 < --warmup < --updates", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = react_preset("synthworld", args.strategy)
    cfg = cfg.with_runtime(
        max_steps=args.updates, warmup_ratio=0.0, checkpoint_every=0, num_workers=args.num_workers
    )
    cfg = replace(cfg, micro_batch_size=args.batch, augment=AugmentConfig.off())
    pairs, _ = read_subset([args.subset])
    pairs = pairs[: args.limit]
    torch.manual_seed(0)
    bundle = prepare_model(load_base(args.base), cfg)
    dataset = PairDataset(
        pairs, tokenize_all(bundle.tokenizer, [p.caption for p in pairs]), bundle.preprocess
    )
    plan = shuffled_batches(len(dataset), args.batch, seed=cfg.runtime.seed, epoch=0)[: args.updates]
    if len(plan) < args.updates:
        print(
            f"error: {len(pairs)} pairs give {len(plan)} batches of {args.batch}; need --updates",
            file=sys.stderr,
        )
        return 2
    batches = [collate_pairs([dataset[i] for i in batch]) for batch in plan]
    rates: dict[str, list[float]] = {"react": [], "bare": []}
    firsts: dict[str, float] = {}
    for round_index in range(args.rounds):
        order = ("react", "bare") if round_index % 2 == 0 else ("bare", "react")
        for arm in order:
            if arm == "react":
                rate, first = time_react(bundle, dataset, cfg, args.updates, args.warmup)
            else:
                rate, first = time_bare(bundle, batches, cfg, args.warmup)
            rates[arm].append(rate)
            firsts[arm] = first
    if abs(firsts["react"] - firsts["bare"]) > 1e-4 * max(1.0, abs(firsts["bare"])):
        print(f"error: first losses differ ({firsts}); the arms did not see the same batch", file=sys.stderr)
        return 1
    summary: dict[str, Any] = {
        "strategy": args.strategy,
        "batch": args.batch,
        "updates_timed_per_round": args.updates - args.warmup,
        "rounds": args.rounds,
        "threads": args.threads,
        "num_workers": args.num_workers,
        "react_samples_per_s": statistics.mean(rates["react"]),
        "bare_samples_per_s": statistics.mean(rates["bare"]),
        "round_ratios": [r / b for r, b in zip(rates["react"], rates["bare"], strict=True)],
        "first_loss": firsts["bare"],
    }
    summary["ratio_react_over_bare"] = summary["react_samples_per_s"] / summary["bare_samples_per_s"]
    if args.json_out is not None:
        atomic_write_json(args.json_out, summary)
    print(json.dumps(summary, indent=1))
    print(f"ratio react/bare samples/s: {summary['ratio_react_over_bare']:.3f} (target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
