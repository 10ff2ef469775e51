"""Pretrain the tiny base LLM on SynthWorld text.

    python -m trainer.foundation.lm_pretrain --world DIR --tokenizer DIR --out DIR \\
        [--extra-json llava_instruct.json] [--preset default] [--max-minutes 5] [--max-steps N] [--seed 0] \\
        [--precision auto|fp32|bf16] [--threads 1]

Documents (see ``corpus``) are split train/held-out by content hash, joined with ``</s>`` and packed into
blocks of 256 tokens. AdamW with linear warmup and a cosine decay; the decay is driven by whichever budget
runs out first (``max_steps`` or ``max_minutes``), so a time-boxed run still ends at the low learning rate.
``max_minutes`` bounds the whole command (tokenising, training, evaluation, saving). The out dir gets the
model (safetensors), the tokenizer and ``metrics.json`` (held-out perplexity next to the unigram baseline
computed on the same tokens), written atomically.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

from trainer.foundation.corpus import CorpusError, iter_world_documents
from trainer.foundation.lm_data import (
    evenly_spaced_rows,
    join_documents,
    pack_blocks,
    split_heldout,
    unigram_perplexity,
)
from trainer.foundation.tiny_lm import TinyLMConfig, build_tiny_lm, count_parameters
from trainer.foundation.tokenizer import TokenizerLoadError, load_tokenizer
from vision_common.atomic import OutputNotWritableError, atomic_directory, atomic_write_json

# Share of the time budget kept back for the final evaluation and saving, plus a fixed floor in seconds.
_RESERVE_FRACTION = 0.10
_RESERVE_SECONDS = 10.0


@dataclass(frozen=True)
class PretrainConfig:
    """Optimisation settings. ``tiny`` trains a test model in seconds; ``default`` is the <= 5 minute recipe."""

    block_size: int = 256
    # Small batches win at this budget. At equal tokens (160k, bf16, 2 seeds) held-out ppl was 3.8-5.0 for
    # batch 4 / lr 2e-3, 5.9-7.1 for batch 8 / lr 2e-3 and 21 for batch 16 / lr 3e-3; batch 8 / lr 3e-3 gave
    # 7.0 or 26.5 depending on the seed, hence 2e-3.
    batch_size: int = 4
    learning_rate: float = 2e-3
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    warmup_steps: int = 10
    max_steps: int = 20000  # the time budget normally binds first
    max_minutes: float | None = 5.0
    grad_clip: float = 1.0
    heldout_fraction: float = 0.05
    eval_max_blocks: int = 64
    log_every: int = 10
    seed: int = 0
    # "bf16" autocasts the training forward to bfloat16 (fp32 master weights, fp32 evaluation): ~1.7x faster
    # steps on CPUs with native bf16 (AVX512-BF16/AMX), much slower elsewhere; "auto" picks by the CPU.
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.block_size < 8:
            raise ValueError(f"PretrainConfig.block_size must be at least 8, got {self.block_size}")
        if self.batch_size <= 0 or self.max_steps <= 0 or self.eval_max_blocks <= 0 or self.log_every <= 0:
            raise ValueError("batch_size, max_steps, eval_max_blocks and log_every must be positive")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be in [0, max_steps={self.max_steps})")
        if self.learning_rate <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("learning_rate must be positive and min_lr_ratio in [0, 1]")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive or None, got {self.max_minutes}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if not 0 < self.heldout_fraction < 0.5:
            raise ValueError(f"heldout_fraction must be in (0, 0.5), got {self.heldout_fraction}")

    @classmethod
    def tiny(cls) -> PretrainConfig:
        return cls(
            block_size=32,
            batch_size=8,
            learning_rate=1e-2,
            warmup_steps=5,
            max_steps=80,
            max_minutes=None,
            precision="fp32",  # deterministic tests, and bf16 only pays off for large matrices
        )

    @classmethod
    def default(cls) -> PretrainConfig:
        return cls()

    @classmethod
    def from_preset(cls, name: str) -> PretrainConfig:
        presets = {"tiny": cls.tiny, "default": cls.default}
        if name not in presets:
            raise ValueError(f"unknown pretraining preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()


def resolve_precision(precision: str) -> str:
    """'fp32' or 'bf16'; 'auto' is bf16 only where oneDNN reports native bf16 support."""
    if precision != "auto":
        return precision
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # op absent in this torch build: stay safe
        native = False
    return "bf16" if native else "fp32"


def learning_rate_at(step: int, progress: float, cfg: PretrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from ``learning_rate`` to ``min_lr_ratio`` of it.

    ``progress`` in [0, 1] is how much of the budget is spent (steps or time, whichever is further along).
    """
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + (cfg.learning_rate - floor) * 0.5 * (
        1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0))
    )


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    # Decay matrices only; norms (1-D weights) are scale parameters that weight decay would pull towards 0.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.95), eps=1e-8)


@torch.no_grad()
def heldout_loss(model: LlamaForCausalLM, blocks: torch.Tensor, batch_size: int) -> float:
    """Mean next-token NLL (nats) over every predicted position of ``blocks`` ``[n, T]``."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, blocks.shape[0], batch_size):
        batch = blocks[start : start + batch_size]  # [B, T]
        logits = model(input_ids=batch).logits[:, :-1].float()  # [B, T-1, V]
        targets = batch[:, 1:]  # [B, T-1]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
        )
        total += nll.item()
        count += targets.numel()
    return total / count


def pretrain(
    model: LlamaForCausalLM,
    train_blocks: torch.Tensor,
    cfg: PretrainConfig,
    *,
    deadline: float | None = None,
    show_progress: bool = True,
) -> dict[str, object]:
    """Train ``model`` in place on ``train_blocks`` ``[n, T]``; returns steps, time and the loss history.

    ``deadline`` (a ``time.perf_counter()`` value) stops training early; the cosine decay follows it.
    """
    if train_blocks.shape[0] == 0:
        raise ValueError("no training blocks: the corpus is shorter than one block")
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    precision = resolve_precision(cfg.precision)
    start = time.perf_counter()
    budget_s = None if deadline is None else max(deadline - start, 1e-6)
    order = torch.randperm(train_blocks.shape[0], generator=generator)
    cursor, step, tokens = 0, 0, 0
    history: list[dict[str, float]] = []
    model.train()
    bar = tqdm(total=cfg.max_steps, desc="pretrain", unit="step", disable=not show_progress)
    while step < cfg.max_steps:
        elapsed = time.perf_counter() - start
        if budget_s is not None and elapsed >= budget_s:
            break
        progress = max(step / cfg.max_steps, 0.0 if budget_s is None else elapsed / budget_s)
        lr = learning_rate_at(step, progress, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if cursor + cfg.batch_size > order.numel():  # new epoch: reshuffle, seeded
            order, cursor = torch.randperm(train_blocks.shape[0], generator=generator), 0
        batch = train_blocks[order[cursor : cursor + cfg.batch_size]]  # [B, T]
        cursor += cfg.batch_size
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        tokens += batch.numel()
        if step % cfg.log_every == 0 or step == 1:
            history.append({"step": step, "loss": round(loss.item(), 4), "lr": lr})
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
        bar.update(1)
    bar.close()
    model.eval()
    return {
        "steps": step,
        "precision": precision,
        "tokens_seen": tokens,
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_train_loss": history[-1]["loss"] if history else None,
        "loss_history": history,
    }


def encode_stream(tokenizer: PreTrainedTokenizerBase, texts: list[str], *, chunk: int = 4096) -> list[int]:
    """All ``texts`` tokenized and joined with ``</s>`` into one stream.

    Goes straight to the Rust tokenizer's ``encode_batch_fast`` (no offsets, ~2x faster than the
    transformers wrapper on 100k documents) in chunks, so the Encoding objects of the whole corpus are never
    alive at once; only the ids are kept. ``tests/trainer/foundation/test_tiny_lm.py`` pins it to ``tokenizer(text)``.
    """
    backend = tokenizer.backend_tokenizer
    stream: list[int] = []
    for start in range(0, len(texts), chunk):
        encodings = backend.encode_batch_fast(texts[start : start + chunk], add_special_tokens=False)
        stream.extend(join_documents((e.ids for e in encodings), tokenizer.eos_token_id))
    return stream


def run_pretraining(
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    model_cfg: TinyLMConfig,
    train_cfg: PretrainConfig,
    *,
    started: float | None = None,
    show_progress: bool = True,
) -> tuple[LlamaForCausalLM, dict[str, object]]:
    """Split, pack, train and evaluate; returns the model and its metrics (nothing is written)."""
    started = time.perf_counter() if started is None else started
    if train_cfg.block_size > model_cfg.max_position_embeddings:
        raise ValueError(
            f"block_size {train_cfg.block_size} exceeds the model's max_position_embeddings "
            f"{model_cfg.max_position_embeddings}"
        )
    train_texts, heldout_texts = split_heldout(texts, train_cfg.heldout_fraction)
    train_blocks = pack_blocks(encode_stream(tokenizer, train_texts), train_cfg.block_size)
    heldout_stream = encode_stream(tokenizer, heldout_texts)
    heldout_blocks = evenly_spaced_rows(
        pack_blocks(heldout_stream, train_cfg.block_size, keep_short=True), train_cfg.eval_max_blocks
    )
    if heldout_blocks.shape[0] == 0:
        raise ValueError(
            f"held-out split is empty ({len(heldout_texts)} documents); add text or raise heldout_fraction"
        )
    torch.manual_seed(train_cfg.seed)
    model = build_tiny_lm(model_cfg, tokenizer)
    deadline = None
    if train_cfg.max_minutes is not None:
        budget = train_cfg.max_minutes * 60.0
        deadline = started + budget * (1.0 - _RESERVE_FRACTION) - _RESERVE_SECONDS
    metrics: dict[str, object] = {
        "params": count_parameters(model),
        "documents": {"train": len(train_texts), "heldout": len(heldout_texts)},
        "tokens": {"train": int(train_blocks.numel()), "heldout_scored": int(heldout_blocks[:, 1:].numel())},
        "model_config": model_cfg.to_dict(),
        "train_config": asdict(train_cfg),
    }
    metrics.update(pretrain(model, train_blocks, train_cfg, deadline=deadline, show_progress=show_progress))
    loss = heldout_loss(model, heldout_blocks, train_cfg.batch_size)
    metrics["heldout_loss"] = round(loss, 4)
    metrics["heldout_perplexity"] = round(math.exp(loss), 3)
    metrics["unigram_perplexity"] = round(unigram_perplexity(train_blocks, heldout_blocks, len(tokenizer)), 3)
    return model, metrics


def save_pretrained_lm(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, metrics: dict[str, object], out: Path
) -> None:
    """Model (safetensors) + tokenizer + metrics.json, swapped into ``out`` in one rename."""
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp)  # transformers 5 always writes model.safetensors
        tokenizer.save_pretrained(tmp)
        metrics["size_mb"] = round((tmp / "model.safetensors").stat().st_size / 1e6, 2)
        atomic_write_json(tmp / "metrics.json", metrics)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.foundation.lm_pretrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--world", type=Path, help="SynthWorld directory (captions + pool are training text)")
    parser.add_argument(
        "--extra-json", type=Path, action="append", default=[], help="LLaVA conversation JSON (repeatable)"
    )
    parser.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory (tokenizer.py)")
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument("--preset", choices=["tiny", "default"], default="default")
    parser.add_argument("--max-minutes", type=float, default=None, help="budget for the whole command")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="training precision (default: preset)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a busy 2-core machine 2 threads ran 2-14x slower per step)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.world is None and not args.extra_json:
        parser.error("give --world and/or --extra-json: there is no training text")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    # Set at the edge, once: thread count is process state. With OpenMP threads competing for busy cores,
    # one thread measured 110 ms per default-preset step against 200-1500 ms for two.
    torch.set_num_threads(args.threads)
    model_cfg = TinyLMConfig.from_preset(args.preset)
    train_cfg = PretrainConfig.from_preset(args.preset)
    overrides: dict[str, object] = {"seed": args.seed}
    if args.max_minutes is not None:
        overrides["max_minutes"] = args.max_minutes
    if args.precision is not None:
        overrides["precision"] = args.precision
    if args.max_steps is not None:
        overrides["max_steps"] = args.max_steps
        overrides["warmup_steps"] = min(train_cfg.warmup_steps, max(args.max_steps - 1, 0))
    try:
        train_cfg = replace(train_cfg, **overrides)
        tokenizer = load_tokenizer(args.tokenizer)
        texts = [doc.text for doc in iter_world_documents(args.world, args.extra_json)]
        model, metrics = run_pretraining(
            texts, tokenizer, model_cfg, train_cfg, started=started, show_progress=not args.no_progress
        )
        metrics["total_seconds"] = round(time.perf_counter() - started, 1)
        save_pretrained_lm(model, tokenizer, metrics, args.out)
    except (CorpusError, TokenizerLoadError, OutputNotWritableError, ValueError) as exc:
        # Bad input is reported as one line naming the file or option, not a traceback.
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    summary = {
        k: metrics[k] for k in ("params", "size_mb", "steps", "precision", "tokens_seen", "train_seconds")
    }
    summary |= {k: metrics[k] for k in ("heldout_perplexity", "unigram_perplexity", "total_seconds")}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
