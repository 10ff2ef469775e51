"""Build a CLIP index over an image-text pool.

    python -m react_explorer.build_index --pool PATH --out DIR [--model ...] [--index-type auto|flat|hnsw|ivfpq]

``--pool`` is a parquet of pairs (``image_path``/``url``, ``caption``, ``key``, ...), a folder of images with
same-stem ``.txt`` captions, or a folder of precomputed embeddings in clip-retrieval's layout (``img_emb/``,
``text_emb/``, ``metadata/``), which is indexed without a model. Pairs are first embedded into that layout in
``--embeddings-dir`` (default ``DIR.embeddings``, kept so the index can be rebuilt with other options), then
indexed. Many processes: ``accelerate launch --num_processes N -m react_explorer.build_index ...``: each rank
embeds its contiguous slice into its own shard, and rank 0 builds the index once all shards are written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from vision_common.cli_help import HelpFormatter

# Idle OpenMP threads must sleep, not spin, while DataLoader workers decode images on the same cores; libgomp
# reads this once, when torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from react_explorer.cli.common import add_model_arguments, parse_bytes, resolve_device, run_cli  # noqa: E402
from react_explorer.embedding.model_spec import parse_model_spec  # noqa: E402
from react_explorer.embedding.pool_readers import detect_pool_format, read_pool  # noqa: E402
from react_explorer.errors import IndexBuildError  # noqa: E402
from react_explorer.index.build import build_index_dir  # noqa: E402
from react_explorer.index.manifest import IndexManifest  # noqa: E402
from react_explorer.index.plan import INDEX_TYPES, IndexBuildConfig  # noqa: E402
from react_explorer.index.progress import BuildProgress, ProgressCallback  # noqa: E402
from react_explorer.index.shards import METADATA_DIR, MODALITY_DIRS, open_embedding_shards  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m react_explorer.build_index",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--pool", required=True, help="pool parquet, image folder, or embeddings folder")
    parser.add_argument("--out", required=True, help="index directory (replaced atomically)")
    add_model_arguments(parser, default_help="default: the SynthWorld tiny CLIP (assets/synthworld/models)")
    parser.add_argument("--index-type", default="auto", choices=INDEX_TYPES, help="auto picks by pool size")
    parser.add_argument(
        "--modalities", default="image,text", help="which indexes: image (T2I/I2I), text (T2T)"
    )
    parser.add_argument(
        "--embeddings-dir", default=None, help="where pairs are embedded (default: OUT.embeddings)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="embedding batch size")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding images")
    parser.add_argument(
        "--max-index-memory", type=parse_bytes, default="4G", help="memory budget of the index"
    )
    parser.add_argument(
        "--flat-threshold", type=int, default=100_000, help="auto: Flat below this many vectors"
    )
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=80, help="HNSW build beam width")
    parser.add_argument(
        "--ef-search", type=int, default=128, help="HNSW search beam width (default at query)"
    )
    parser.add_argument("--nlist", type=int, default=None, help="IVF lists (default: ~sqrt(N))")
    parser.add_argument("--pq-m", type=int, default=None, help="PQ code bytes (default: up to 64, divides D)")
    parser.add_argument(
        "--nprobe", type=int, default=64, help="IVF lists visited per query (default at query)"
    )
    parser.add_argument(
        "--rerank-factor", type=int, default=10, help="IVF-PQ: exact re-rank k*this candidates"
    )
    parser.add_argument(
        "--on-disk", action=argparse.BooleanOptionalAction, default=None, help="IVF lists on disk"
    )
    parser.add_argument("--chunk-rows", type=int, default=65536, help="vectors per FAISS add call")
    parser.add_argument("--seed", type=int, default=0, help="IVF/PQ training sample")
    parser.add_argument("--no-progress", action="store_true", help="disable tqdm bars")
    return parser


def index_config_from_args(args: argparse.Namespace) -> IndexBuildConfig:
    return IndexBuildConfig(
        index_type=args.index_type,
        max_index_memory=args.max_index_memory,
        flat_threshold=args.flat_threshold,
        hnsw_m=args.hnsw_m,
        hnsw_ef_construction=args.ef_construction,
        hnsw_ef_search=args.ef_search,
        ivf_nlist=args.nlist,
        pq_m=args.pq_m,
        ivf_nprobe=args.nprobe,
        rerank_factor=args.rerank_factor,
        on_disk=args.on_disk,
        chunk_rows=args.chunk_rows,
        seed=args.seed,
    )


def parse_modalities(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in MODALITY_DIRS]
    if not names or unknown:
        raise IndexBuildError(f"--modalities must list some of {tuple(MODALITY_DIRS)}, got {text!r}")
    return names


def default_embeddings_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.embeddings"


EMBEDDINGS_MARKER = ".written_by_react_explorer"


def prepare_embeddings_dir(directory: Path) -> None:
    """Create the folder, or clear the shards a previous build left there (so no stale shard joins this one).

    Only folders this command wrote (they carry a marker file) are cleared: ``--embeddings-dir`` pointing at
    someone's precomputed embeddings by mistake must not delete them.
    """
    shard_dirs = [directory / name for name in (*MODALITY_DIRS.values(), METADATA_DIR)]
    if any(path.exists() for path in shard_dirs) and not (directory / EMBEDDINGS_MARKER).is_file():
        raise IndexBuildError(
            f"{directory} holds embedding shards that build_index did not write; choose another --embeddings-dir "
            "(or index those embeddings directly with --pool)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / EMBEDDINGS_MARKER).write_text(
        "shards here are rewritten by python -m react_explorer.build_index\n"
    )
    for path in shard_dirs:
        shutil.rmtree(path, ignore_errors=True)


def build(args: argparse.Namespace, on_progress: ProgressCallback | None = None) -> IndexManifest | None:
    """Embed (all ranks) and index (rank 0); returns the manifest on rank 0, None elsewhere.

    ``on_progress`` (the app's background build) hears each embedded batch and the start of indexing."""
    cfg = index_config_from_args(args)
    modalities = parse_modalities(args.modalities)
    out = Path(args.out)
    pool_path = Path(args.pool)
    kind = detect_pool_format(pool_path)
    spec = parse_model_spec(args.model, args.pretrained)
    if kind == "embeddings":
        # Nothing to embed: the vectors exist. Only the first process indexes them.
        if int(os.environ.get("RANK", "0")) != 0:
            return None
        shards = open_embedding_shards(pool_path)
        model = spec.describe() if args.model else None
        info = {"pool": str(pool_path.resolve()), "pool_format": kind}
        return build_index_dir(shards, out, cfg, model=model, modalities=modalities, source_info=info,
                               progress=not args.no_progress)  # fmt: skip
    # Documented function-local project imports: embedding imports torch (~650 MB of RSS and seconds on two
    # cores), which indexing precomputed embeddings (the branch above) must not pay.
    from react_explorer.embedding.embed_pool import EmbedConfig, embed_pool_shard
    from react_explorer.embedding.encoders import load_encoder

    pool = read_pool(pool_path)  # every rank validates the pool before any work
    embed_cfg = EmbedConfig(
        batch_size=args.batch_size,
        num_workers=args.workers,
        modalities=modalities,
        progress=not args.no_progress,
    )
    rank, world_size, barrier, device = _process_group(args.device)
    embeddings = Path(args.embeddings_dir) if args.embeddings_dir else default_embeddings_dir(out)
    if rank == 0:
        prepare_embeddings_dir(embeddings)
    barrier()
    encoder = load_encoder(spec, device=device)
    embed_pool_shard(pool, encoder, embeddings, rank=rank, world_size=world_size, cfg=embed_cfg,
                     on_progress=on_progress)  # fmt: skip
    barrier()
    if rank != 0:
        return None
    shards = open_embedding_shards(embeddings)
    if len(shards.shards) != world_size or shards.count != len(pool):
        raise IndexBuildError(
            f"{embeddings}: {len(shards.shards)} shards with {shards.count} rows, expected {world_size} with "
            f"{len(pool)}"
        )
    if on_progress is not None:
        on_progress(BuildProgress("index", shards.count, shards.count, "image" in modalities))
    info = {
        "pool": str(pool_path.resolve()),
        "pool_format": kind,
        "processes": world_size,
        "embedding_dtype": embed_cfg.dtype,
    }
    return build_index_dir(shards, out, cfg, model=encoder.model_id, modalities=modalities, source_info=info,
                           progress=not args.no_progress)  # fmt: skip


def _process_group(device: str) -> tuple[int, int, object, str]:
    """(rank, world size, barrier, device); a process group only when launched with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, lambda: None, resolve_device(device)
    import torch
    from accelerate import PartialState

    # Without CUDA, accelerate forms the CPU (gloo) group only when told cpu=True.
    state = PartialState(cpu=not torch.cuda.is_available())
    # Each rank takes its own GPU (cuda:LOCAL_RANK) unless a device was named explicitly.
    chosen = (
        str(state.device)
        if device in ("auto", "cuda") and torch.cuda.is_available()
        else resolve_device(device)
    )
    return state.process_index, state.num_processes, state.wait_for_everyone, chosen


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        manifest = build(args)
        if manifest is not None:
            for modality, entry in manifest.modalities.items():
                plan = entry["plan"]
                print(
                    f"{modality}: {plan['factory']}{' (on disk)' if plan['on_disk'] else ''} over "
                    f"{manifest.count} x {manifest.dim} in {entry['build_seconds']:.1f} s ({plan['reason']})"
                )
            print(f"index written to {args.out}")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
