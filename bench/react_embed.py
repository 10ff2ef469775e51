"""Embedding throughput of the tiny SynthWorld CLIP: images/s (decode, model, end to end) and captions/s.

    python bench/react_embed.py --world .cache/synthworld/default-seed0 [--model local-dir:DIR] [--images 2048]

Pool images are embedded exactly as ``build_index`` does (``ClipEncoder.iter_image_file_embeddings``: DataLoader
workers decode and preprocess, the main process runs the vision tower), with 0, 1 and 2 decode workers. Decode
alone and the model alone (on already-decoded tensors) are timed too, to show which one bounds the pipeline.
Without ``--model`` and without the committed SynthWorld CLIP, a random-weight model of the same architecture
(``TinyClipConfig.default()``) is used: throughput does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from react_explorer.embedding.encoders import ClipEncoder, load_encoder  # noqa: E402
from react_explorer.embedding.image_batches import iter_image_batches  # noqa: E402
from react_explorer.embedding.model_spec import DEFAULT_MODEL_DIR, parse_model_spec  # noqa: E402
from react_explorer.embedding.pool_readers import read_pool  # noqa: E402


def random_default_encoder(captions: list[str]) -> ClipEncoder:
    from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer
    from vision_common.tiny_clip import TinyClipConfig, create_tiny_clip

    tokenizer_dir = Path(tempfile.mkdtemp(prefix="react_embed_tok_"))
    save_tokenizer(train_tokenizer(captions, vocab_size=2048), tokenizer_dir)
    model, _, preprocess, tokenizer = create_tiny_clip(TinyClipConfig.default(), tokenizer_dir, seed=0)
    return ClipEncoder(model, preprocess, tokenizer, model_id="random TinyClipConfig.default()")


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default=str(REPO / ".cache" / "synthworld" / "default-seed0"))
    parser.add_argument(
        "--model", default=None, help="model spec (default: the SynthWorld tiny CLIP if present)"
    )
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pool = read_pool(Path(args.world) / "pool" / "pool.parquet").slice(0, args.images)
    paths, captions = pool.image_files(), pool.captions()
    if args.model or (DEFAULT_MODEL_DIR / "open_clip_config.json").is_file():
        encoder = load_encoder(parse_model_spec(args.model))
    else:
        encoder = random_default_encoder(read_pool(Path(args.world) / "pool" / "pool.parquet").captions())
    results: dict = {"model": encoder.model_id, "images": len(paths), "threads": args.threads,
                     "batch_size": args.batch_size, "cpus": os.cpu_count()}  # fmt: skip
    encoder.embed_image_files(paths[: args.batch_size], batch_size=args.batch_size, num_workers=0)  # warm-up
    started = time.perf_counter()
    decoded = [
        b.pixels
        for b in iter_image_batches(paths, encoder.preprocess, batch_size=args.batch_size, num_workers=0)
    ]
    results["decode_only_images_per_s"] = rate(len(paths), time.perf_counter() - started)
    started = time.perf_counter()
    with torch.inference_mode():
        for pixels in decoded:
            encoder.model.encode_image(pixels, normalize=True)
    results["model_only_images_per_s"] = rate(len(paths), time.perf_counter() - started)
    for workers in args.workers:
        started = time.perf_counter()
        encoder.embed_image_files(paths, batch_size=args.batch_size, num_workers=workers)
        results[f"end_to_end_images_per_s_workers_{workers}"] = rate(
            len(paths), time.perf_counter() - started
        )
    started = time.perf_counter()
    encoder.embed_texts(captions, batch_size=args.batch_size)
    results["captions_per_s"] = rate(len(captions), time.perf_counter() - started)
    for key, value in results.items():
        print(f"{key}: {value:.0f}" if isinstance(value, float) else f"{key}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
