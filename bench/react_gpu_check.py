"""GPU check: one bf16 ``gated-image`` step on a ViT-B/32-shaped CLIP (random init, real shapes), batch 256.

    python -m bench.react_gpu_check [--batch 256] [--steps 5] [--last-k 6]

Builds open_clip's ``ViT-B-32`` with random weights (no download), attaches REACT's gated blocks in front of the
last 6 vision blocks (gradient checkpointing on, as the fork), freezes everything but the gated blocks and
``logit_scale``, and runs ``--steps`` AdamW updates under bf16 autocast on CUDA with the gamma-positive loss
(one warm-up update first). Prints the trainable parameter count (42.5M gated + 1 for B/32, ``react.md`` section
2), samples/s, peak GPU memory, and checks that only gated parameters and ``logit_scale`` changed. Exits 2
without CUDA. Expected to finish well under 2 minutes on an H100.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import torch

from react_explorer.customized.gated_blocks import ReactModelConfig, attach_gated_blocks
from trainer.react.loss import gamma_positive_loss
from trainer.react.strategies import changed_parameters, configure_strategy, parameter_counts, train_mode_for


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.react_gpu_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--last-k", type=int, default=6)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of the same code (tiny batch)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device; this check is for a machine with a GPU", file=sys.stderr)
        return 2
    import open_clip  # heavy; only once the device is known to be there

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).to(device)
    attach_gated_blocks(model, ReactModelConfig(last_k_layers=args.last_k, grad_checkpointing=True))
    groups = configure_strategy(model, "gated-image")
    counts = parameter_counts(model)
    optimizer = torch.optim.AdamW(
        list(groups[0].params), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1
    )
    train_mode_for("gated-image")(model)
    images = torch.randn(args.batch, 3, 224, 224, device=device)
    texts = torch.randint(1, 49407, (args.batch, 77), device=device)
    texts[:, -1] = 49407  # open_clip pools the text at the largest id (OpenAI's end-of-text)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            image, text, scale = model(image=images, text=texts)
        loss = gamma_positive_loss(image, text, scale, 0.9)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        return loss.item()

    step()  # warm-up: kernels, allocator
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    changed = changed_parameters(before, model)
    unexpected = sorted(name for name in changed if "gated_attn_block" not in name and name != "logit_scale")
    report = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "batch": args.batch,
        "steps_timed": args.steps,
        "trainable_parameters": counts["trainable"],
        "gated_parameters": counts["gated"],
        "samples_per_s": args.batch * args.steps / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "losses": losses,
        "changed_outside_gated_and_logit_scale": unexpected,
    }
    print(json.dumps(report, indent=1))
    finite = all(torch.isfinite(torch.tensor(losses)))
    return 0 if finite and not unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
