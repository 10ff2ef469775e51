"""REACT's gamma-positive contrastive loss, single-process and data-parallel.

For L2-normalised image features u_i, text features v_i and the learned scale tau (``logit_scale.exp()``), the
positives of pair i are P(i) = { j : cos(v_i, v_j) >= gamma } (always containing i). Image->text:

    L_i2t = -(1/N) sum_i (1/|P(i)|) sum_{j in P(i)} log softmax_j(tau u_i . v_j)

text->image is the mirror image (P is symmetric), and the loss is their mean (the dissertation's REACT loss, in
UniCL's form). gamma = 1 keeps only identical texts as positives (UniCL with captions as labels); with distinct
texts P(i) = {i} and this is CLIP's InfoNCE (open_clip ``ClipLoss``). The public fork trains with plain InfoNCE.

Data-parallel: every process gathers all features (with gradients), computes the positives over the global
batch, and the loss of *its own* rows only, divided by the global 2N. The global loss is the sum of the
per-process values; each process backpropagates ``world_size`` times its value, so that after DDP averages the
gradients they equal the gradients of the global loss, exactly as one process over the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

# Cosines computed in float32 carry rounding: a text compared with an identical copy may come out at
# 0.99999994, which must still count as ">= 1" for gamma = 1.
COSINE_TOLERANCE = 1e-6


def positive_mask(text_features: torch.Tensor, gamma: float) -> torch.Tensor:
    """[N, N] bool: cos(v_i, v_j) >= gamma (within rounding), the diagonal always True."""
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    with torch.no_grad():
        features = F.normalize(text_features.detach().float(), dim=-1)
        mask = features @ features.T >= gamma - COSINE_TOLERANCE  # [N, N]
        mask.fill_diagonal_(True)
    return mask


def _rows_loss(
    image_rows: torch.Tensor,
    text_rows: torch.Tensor,
    image_all: torch.Tensor,
    text_all: torch.Tensor,
    positives_rows: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """Sum over the given rows of both directions' per-row loss ([b, D] rows against [N, D] columns)."""
    weights = positives_rows.float() / positives_rows.sum(dim=1, keepdim=True)  # [b, N], rows sum to 1
    i2t = F.log_softmax(scale * image_rows @ text_all.T, dim=1)  # [b, N]
    t2i = F.log_softmax(scale * text_rows @ image_all.T, dim=1)  # [b, N]
    return -(weights * i2t).sum() - (weights * t2i).sum()


def gamma_positive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor, gamma: float
) -> torch.Tensor:
    """The loss over one whole batch (normalised [N, D] features, ``logit_scale`` already exponentiated)."""
    _check_pair(image_features, text_features)
    image, text = image_features.float(), text_features.float()
    positives = positive_mask(text, gamma)
    return _rows_loss(image, text, image, text, positives, logit_scale.float()) / (2 * image.shape[0])


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for this process's slice (works on gloo)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def local_gamma_positive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(value to backpropagate, this process's share of the global loss) for this process's micro-batch.

    Without a process group both are the single-process loss. With one, every process must hold the same
    number of rows (the data order guarantees it); the shares sum to the global loss.
    """
    _check_pair(image_features, text_features)
    if not distributed():
        loss = gamma_positive_loss(image_features, text_features, logit_scale, gamma)
        return loss, loss.detach()
    sizes = [
        torch.zeros((), dtype=torch.long, device=image_features.device) for _ in range(dist.get_world_size())
    ]
    dist.all_gather(sizes, torch.tensor(image_features.shape[0], device=image_features.device))
    if len({int(size) for size in sizes}) != 1:
        raise ValueError(
            f"every process needs the same micro-batch size for the loss, got {[int(s) for s in sizes]}"
        )
    image, text = image_features.float(), text_features.float()
    image_all = _GatherWithGradient.apply(image)  # [N, D]
    text_all = _GatherWithGradient.apply(text)  # [N, D]
    total = image_all.shape[0]
    start = dist.get_rank() * image.shape[0]
    positives = positive_mask(text_all, gamma)[start : start + image.shape[0]]  # [b, N]
    share = _rows_loss(image, text, image_all, text_all, positives, logit_scale.float()) / (2 * total)
    return share * dist.get_world_size(), share.detach()


def _check_pair(image_features: torch.Tensor, text_features: torch.Tensor) -> None:
    if image_features.ndim != 2 or image_features.shape != text_features.shape:
        raise ValueError(
            "image and text features must both be [N, D], got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    if image_features.shape[0] < 2:
        raise ValueError("a contrastive batch needs at least 2 pairs")
