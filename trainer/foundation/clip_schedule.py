"""Optimiser pieces for CLIP training: weight-decay groups, a time-aware warmup + cosine schedule, metrics.

The schedule runs on *progress* in [0, 1] rather than a fixed step count because training stops on a wall-clock
budget (``--max-minutes``) on a shared 2-core machine whose speed is not known in advance: progress is the larger
of steps done / step cap and time used / time budget, so the learning rate reaches its floor when the budget ends.
"""

from __future__ import annotations

import math

import torch

from trainer.foundation.clip_data import PoolPairsDataset, make_loader


def lr_at(step: int, progress: float, *, base_lr: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warmup over ``warmup_steps`` steps, then cosine decay from ``base_lr`` to ``min_lr_ratio*base_lr``.

    ``progress`` is the fraction of the whole run done (clamped to [0, 1]); warmup is counted in steps because
    a fixed number of updates, not of seconds, is what stabilises the first Adam moments.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    floor = base_lr * min_lr_ratio
    return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def run_progress(step: int, max_steps: int | None, elapsed_s: float, budget_s: float) -> float:
    """Fraction of the run done: whichever of the step cap or the time budget is closer to exhausted."""
    by_time = elapsed_s / budget_s if budget_s > 0 else 1.0
    by_steps = step / max_steps if max_steps else 0.0
    return min(1.0, max(by_time, by_steps))


TEXT_TOWER_PREFIXES = (
    "token_embedding",
    "positional_embedding",
    "transformer.",
    "ln_final",
    "text_projection",
)


def param_groups(model: torch.nn.Module, weight_decay: float, text_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups as in open_clip: no decay on gains, biases, 1-D params and ``logit_scale``.

    Text-tower parameters (open_clip ``CLIP`` names) get ``lr_scale=text_lr_scale``; the loop multiplies the
    scheduled learning rate by each group's ``lr_scale``.
    """
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        is_text = name.startswith(TEXT_TOWER_PREFIXES)
        groups.setdefault((exclude, is_text), []).append(param)
    return [
        {
            "params": params,
            "weight_decay": 0.0 if exclude else weight_decay,
            "lr_scale": text_lr_scale if is_text else 1.0,
        }
        for (exclude, is_text), params in sorted(groups.items())
    ]


def retrieval_recall_at_1(image_features: torch.Tensor, text_features: torch.Tensor) -> dict[str, float]:
    """Image->text and text->image recall@1 of paired rows (row i of each matrix is one pair).

    Features need not be normalised (cosine similarity is used). Ties count against the pair.
    """
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(
            f"features must be equal-shaped [N, D], got {tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    image = torch.nn.functional.normalize(image_features.float(), dim=-1)
    text = torch.nn.functional.normalize(text_features.float(), dim=-1)
    sim = image @ text.T  # [N_img, N_txt]
    diagonal = sim.diagonal()
    # A pair is retrieved at rank 1 only if its similarity beats every other candidate strictly.
    off = sim.clone()
    off.fill_diagonal_(-float("inf"))
    i2t = (diagonal > off.max(dim=1).values).float().mean().item()
    t2i = (diagonal > off.max(dim=0).values).float().mean().item()
    return {"image_to_text_r1": i2t, "text_to_image_r1": t2i}


@torch.no_grad()
def held_out_recall(model: torch.nn.Module, dataset: PoolPairsDataset, batch_size: int) -> dict[str, float]:
    """Recall@1 on held-out pool pairs (val transform, no augmentation)."""
    model.eval()
    image_feats, text_feats = [], []
    for images, ids, _ in make_loader(
        dataset, batch_size=batch_size, num_workers=0, seed=0, shuffle=False, drop_last=False
    ):
        image_feats.append(model.encode_image(images))
        text_feats.append(model.encode_text(ids))
    return retrieval_recall_at_1(torch.cat(image_feats), torch.cat(text_feats))
