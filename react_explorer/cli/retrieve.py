"""Retrieve the pool pairs for a target task given only by class names, and write them as a parquet subset.

    python -m react_explorer.retrieve [--index DIR] --classes "a,b,c" [--templates openai|simple|FILE]
        [--mode t2i|t2t] [--k 50] --out subset.parquet

Each class x template prompt is its own query (REACT); the top-k of every prompt are merged per class (every
prompt that hit a pair is kept in ``hits``), near-duplicates are removed (image-embedding cosine >= 0.94, as
clip-retrieval) and the rows are written with ``url``/``image_path``, ``caption``, ``similarity``, ``class`` and
``query``, ready for ``img2dataset --input_format parquet --url_col url --caption_col caption``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pyarrow as pa

from react_explorer.cli.common import add_model_arguments, resolve_device, run_cli
from react_explorer.cli.default_index import embedded_index
from react_explorer.embedding.encoders import load_encoder
from react_explorer.embedding.model_spec import parse_model_spec
from react_explorer.errors import MissingImagesError, QueryError
from react_explorer.index.clip_index import ClipIndex
from react_explorer.retrieval.algorithms import DEFAULT_DEDUP_THRESHOLD
from react_explorer.retrieval.class_queries import (
    MODES,
    ClassRetrieval,
    RetrievalConfig,
    retrieve_classes,
    search_image,
    search_text,
    subset_table,
)
from react_explorer.retrieval.prompt_templates import load_templates, parse_class_names, read_class_file
from react_explorer.ui.explorer_config import DEFAULT_CACHE_ROOT, DEFAULT_WORLD, ExplorerConfig
from vision_common.atomic import atomic_write_bytes
from vision_common.cli_help import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m react_explorer.retrieve",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--index",
        help="index directory written by react_explorer.cli.build_index (default: the embedded SynthWorld "
        "pool's index, as in the app; built on first use, with progress)",
    )
    parser.add_argument(
        "--world",
        type=Path,
        default=DEFAULT_WORLD,
        help="the SynthWorld world whose pool is used without --index",
    )
    parser.add_argument(
        "--index-cache",
        type=Path,
        default=DEFAULT_CACHE_ROOT,
        help="where the embedded index is kept (the app's explorer uses the same folder)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars when building the index")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--classes", help='comma-separated class names, e.g. "vorn,tessel,quorl"')
    query.add_argument("--classes-file", help="a classes.txt (one class per line), e.g. a SynthWorld task's")
    query.add_argument("--query", help="one free-text query (no templates)")
    query.add_argument("--query-image", help="an image file: I2I in t2i mode, I2T in t2t mode")
    parser.add_argument(
        "--templates",
        default="openai",
        help="openai (80), simple (7), synthworld (4), or a file with {} per line",
    )
    parser.add_argument(
        "--mode", default="t2i", choices=sorted(MODES), help="search image or caption embeddings"
    )
    parser.add_argument("--k", type=int, default=50, help="results per prompt")
    parser.add_argument("--dedup-threshold", type=float, default=DEFAULT_DEDUP_THRESHOLD, help="cosine")
    parser.add_argument("--no-dedup", action="store_true", help="keep near-duplicates")
    parser.add_argument(
        "--skip-missing-images", action="store_true", help="drop rows whose image file is gone"
    )
    parser.add_argument("--fast-load", action="store_true", help="check index file sizes, not sha256")
    add_model_arguments(parser, default_help="default: the model recorded in the index manifest")
    parser.add_argument("--out", required=True, help="subset parquet (written atomically)")
    return parser


def run(args: argparse.Namespace) -> ClassRetrieval:
    import pyarrow.parquet as pq

    cfg = RetrievalConfig(
        mode=args.mode, k=args.k, dedup=not args.no_dedup, dedup_threshold=args.dedup_threshold
    )
    # Cheap input checks come first, before the index and the model are loaded.
    class_names = templates = None
    if args.classes is not None:
        class_names = parse_class_names(args.classes)
    elif args.classes_file is not None:
        class_names = read_class_file(args.classes_file)
    if class_names is not None:
        templates = load_templates(args.templates)
    if args.query_image is not None and not Path(args.query_image).is_file():
        raise QueryError(f"query image {args.query_image} not found")
    if args.index is None:
        embedded = ExplorerConfig(world=args.world, cache_root=args.index_cache)
        args.index = str(embedded_index(embedded, progress=not args.no_progress))
    index = ClipIndex.load(args.index, verify_checksums=not args.fast_load)
    model = args.model or index.model
    if model is None:
        raise QueryError(f"index {args.index} does not record its model; pass --model")
    encoder = load_encoder(parse_model_spec(model, args.pretrained), device=resolve_device(args.device))
    if class_names is not None:
        retrieval = retrieve_classes(index, encoder, class_names, templates, cfg)
    elif args.query is not None:
        retrieval = search_text(index, encoder, args.query, cfg)
    else:
        from PIL import Image

        with Image.open(args.query_image) as image:
            retrieval = search_image(index, encoder, image.convert("RGB"), Path(args.query_image).stem, cfg)
    table = subset_table(index, retrieval)
    table, dropped = check_subset_images(table, skip_missing=args.skip_missing_images)
    if dropped:
        print(f"warning: dropped {dropped} rows whose image file is missing", file=sys.stderr)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(args.out, buffer.getvalue())
    return retrieval


def check_subset_images(table: pa.Table, *, skip_missing: bool) -> tuple[pa.Table, int]:
    """Rows whose ``image_path`` does not exist: an error naming them, or dropped (returns the table, dropped)."""
    if "image_path" not in table.column_names:
        return table, 0
    paths = table.column("image_path").to_pylist()
    exists = [bool(p) and Path(p).is_file() for p in paths]
    if all(exists):
        return table, 0
    missing = [i for i, ok in enumerate(exists) if not ok]
    if skip_missing:
        return table.filter(pa.array(exists)), len(missing)
    keys = table.column("key").to_pylist()
    examples = ", ".join(f"key {keys[i]!r}: {paths[i]}" for i in missing[:5])
    raise MissingImagesError(
        f"{len(missing)} retrieved rows point at missing pool images (first: {examples}); the pool moved or was "
        "pruned since indexing: fix it, rebuild the index, or pass --skip-missing-images"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        retrieval = run(args)
        for name, hits in retrieval.per_class.items():
            removed = retrieval.removed_duplicates.get(name, 0)
            best = f", best similarity {hits[0].similarity:.3f}" if hits else ""
            print(f"{name}: {len(hits)} pairs ({removed} near-duplicates removed){best}")
        print(f"subset written to {args.out}")
        return 0

    return run_cli(go)


if __name__ == "__main__":
    sys.exit(main())
