"""ANN benchmark of the REACT explorer index on N synthetic 512-d unit vectors (default 1M), built from shards.

    nice -n 10 python bench/react_index.py --parts exact,hnsw,ivfpq [--n 1000000] [--work-dir /tmp/react_bench]

What it measures, all in one process family on the same machine:

* ``exact``: brute-force inner-product top-k of the queries (FAISS ``knn``, BLAS): the ground truth, and the
  exact batch queries/s that the ANN speed-up is relative to. Cached in the work dir for later parts.
* ``hnsw`` / ``ivfpq``: ``python -m react_explorer.build_index`` run in a child process on the sharded ``.npy``
  files (clip-retrieval layout, float16), so the build is the real streaming code path; its wall time and peak
  RSS are measured. Then a sweep of efSearch (HNSW) or nprobe x re-rank factor (IVF-PQ): recall@k against the
  exact top-k, and batch queries/s through ``ClipIndex.search``.

Data: isotropic random unit vectors have no neighbourhood structure at this dimension (the 10th and the 1000th
neighbour of a query are almost equally far), which no ANN method can exploit and which real CLIP embeddings do
not look like. The vectors here are anisotropic Gaussians (standard deviation of dimension i proportional to
i^-decay, decay 0.75: the spectrum of ``retrieval_at_scale.md`` section 7), randomly rotated and L2-normalised;
``--decay 0`` gives the isotropic case. Parts run separately (``--parts hnsw``) reuse the cached shards and truth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle FAISS threads sleep on a shared machine

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from react_explorer.index.clip_index import ClipIndex  # noqa: E402
from react_explorer.index.shards import open_embedding_shards, write_embedding_shard  # noqa: E402
from react_explorer.retrieval.algorithms import recall_at_k  # noqa: E402

# A child that runs a module and reports its own peak RSS (ru_maxrss, KiB on Linux) on stderr.
RSS_WRAPPER = (
    "import resource, runpy, sys\n"
    "sys.argv = sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    print('PEAK_RSS_KIB=%d' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def synthetic_vectors(
    rows: int, dim: int, decay: float, rotation: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    scale = (np.arange(1, dim + 1, dtype=np.float32) ** -decay).astype(np.float32)  # std of dimension i
    vectors = (rng.standard_normal((rows, dim), dtype=np.float32) * scale) @ rotation
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def data_spec(args: argparse.Namespace) -> dict:
    return {
        "n": args.n,
        "dim": args.dim,
        "std_decay": args.decay,
        "seed": args.seed,
        "shard_rows": args.shard_rows,
    }


def ensure_shards(args: argparse.Namespace, work: Path) -> Path:
    """Write the pool once as float16 shards (img_emb_N.npy + metadata_N.parquet); reuse it when the spec matches."""
    root, spec_file = work / "emb", work / "emb_spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == data_spec(args):
        return root
    rng = np.random.default_rng(args.seed)
    rotation = np.linalg.qr(rng.standard_normal((args.dim, args.dim)))[0].astype(np.float32)
    started = time.perf_counter()
    for number, start in enumerate(range(0, args.n, args.shard_rows)):
        stop = min(start + args.shard_rows, args.n)
        meta = pa.table({"key": [f"{i:09d}" for i in range(start, stop)],
                         "url": [f"synthetic://{i}" for i in range(start, stop)]})  # fmt: skip
        blocks = (synthetic_vectors(min(65536, stop - s), args.dim, args.decay, rotation, rng)
                  for s in range(start, stop, 65536))  # fmt: skip
        write_embedding_shard(root, number, meta, {"image": blocks}, args.dim)
    queries = synthetic_vectors(
        args.queries, args.dim, args.decay, rotation, np.random.default_rng(args.seed + 1)
    )
    np.save(work / "queries.npy", queries)
    spec_file.write_text(json.dumps(data_spec(args)))
    print(f"wrote {args.n} x {args.dim} float16 vectors in {time.perf_counter() - started:.1f} s")
    return root


def load_base(emb: Path) -> np.ndarray:
    """All vectors as the index holds them (float32, re-normalised): 2 GB at 1M x 512."""
    return np.concatenate(list(open_embedding_shards(emb).iter_chunks("image", 65536)))


def exact_batch_qps(base: np.ndarray, queries: np.ndarray, k: int) -> float:
    started = time.perf_counter()
    faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
    return len(queries) / (time.perf_counter() - started)


def exact_single_ms(base: np.ndarray, queries: np.ndarray, k: int) -> float:
    times = []
    for query in queries:
        tick = time.perf_counter()
        faiss.knn(query[None], base, k, metric=faiss.METRIC_INNER_PRODUCT)
        times.append(time.perf_counter() - tick)
    return 1000 * float(np.median(times))


def exact_part(args: argparse.Namespace, work: Path, emb: Path) -> dict:
    base, queries = load_base(emb), np.load(work / "queries.npy")
    started = time.perf_counter()
    _, ids = faiss.knn(queries, base, args.k_truth, metric=faiss.METRIC_INNER_PRODUCT)
    seconds = time.perf_counter() - started
    np.save(work / "truth.npy", ids)
    result = {"batch_qps": len(queries) / seconds, "batch_seconds": seconds,
              "single_query_ms_median": exact_single_ms(base, queries[:10], args.k),
              "flat_bytes_per_vector": 4 * args.dim}  # fmt: skip
    (work / "exact.json").write_text(json.dumps(result))
    return result


def build_child(emb: Path, out: Path, extra: list[str]) -> dict:
    command = [sys.executable, "-c", RSS_WRAPPER, "react_explorer.cli.build_index", "--pool", str(emb), "--out", str(out),
               "--modalities", "image", "--no-progress", *extra]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"build failed ({result.returncode}):\n{result.stderr[-3000:]}")
    peak = [line for line in result.stderr.splitlines() if line.startswith("PEAK_RSS_KIB=")]
    manifest = json.loads((out / "manifest.json").read_text())
    plan = manifest["modalities"]["image"]["plan"]
    return {"wall_seconds": seconds, "index_build_seconds": manifest["modalities"]["image"]["build_seconds"],
            "peak_rss_bytes": int(peak[-1].split("=")[1]) * 1024, "factory": plan["factory"], "on_disk": plan["on_disk"],
            "planned_index_bytes": plan["estimated_bytes"], "stdout": result.stdout.strip()}  # fmt: skip


def timed_search(index: ClipIndex, queries: np.ndarray, k: int, **params) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    result = index.search(queries, k, "image", **params)
    return result.ids, len(queries) / (time.perf_counter() - started)


def single_query_ms(index: ClipIndex, queries: np.ndarray, k: int, **params) -> float:
    times = []
    for query in queries[:200]:
        tick = time.perf_counter()
        index.search(query[None], k, "image", **params)
        times.append(time.perf_counter() - tick)
    return 1000 * float(np.median(times))


def ann_part(kind: str, args: argparse.Namespace, work: Path, emb: Path) -> dict:
    out = work / f"idx_{kind}"
    extra = ["--index-type", kind]
    if kind == "hnsw":
        extra += ["--hnsw-m", str(args.hnsw_m), "--ef-construction", str(args.ef_construction)]
    else:
        extra += ["--on-disk"] if args.on_disk else ["--no-on-disk"]
    build = build_child(emb, out, extra)
    index = ClipIndex.load(out, verify_checksums=False)
    queries, truth = np.load(work / "queries.npy"), np.load(work / "truth.npy")
    # Exact search is timed again here, around the sweep, so both sides of the ratio see the same machine load.
    base = load_base(emb)
    exact_qps = [exact_batch_qps(base, queries[: args.exact_queries], args.k)]
    rows = []
    grid = ([{"ef_search": ef} for ef in args.ef_search] if kind == "hnsw" else
            [{"nprobe": p, "rerank_factor": f} for p in args.nprobe for f in args.rerank_factor])  # fmt: skip
    for params in grid:
        ids, qps = timed_search(index, queries, args.k, **params)
        rows.append({**params, "recall": recall_at_k(ids, truth, args.k), "qps": qps})
        print(f"{kind} {params}: recall@{args.k} {rows[-1]['recall']:.4f}, {qps:.0f} QPS", flush=True)
    exact_qps.append(exact_batch_qps(base, queries[: args.exact_queries], args.k))
    exact = {"batch_qps_before_after": exact_qps, "batch_qps": float(np.mean(exact_qps)),
             "single_query_ms_median": exact_single_ms(base, queries[:10], args.k)}  # fmt: skip
    del base
    for row in rows:
        row["batch_speedup_vs_exact"] = row["qps"] / exact["batch_qps"]
    good = [row for row in rows if row["recall"] >= args.target_recall]
    best = max(good, key=lambda row: row["qps"]) if good else None
    if best:
        params = {key: best[key] for key in ("ef_search", "nprobe", "rerank_factor") if key in best}
        single = single_query_ms(index, queries, args.k, **params)
        best = {**best, "single_query_ms_median": single,
                "single_query_speedup_vs_exact": exact["single_query_ms_median"] / single}  # fmt: skip
    files = {name: entry["bytes"] for name, entry in index.manifest.files.items()}
    return {"build": build, "exact_same_run": exact, "sweep": rows, "best_at_target": best, "files_bytes": files,
            "index_bytes_per_vector": sum(v for n, v in files.items() if n.endswith((".index", ".ivfdata"))) / args.n}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="exact,hnsw,ivfpq", help="comma list of exact, hnsw, ivfpq")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--k-truth", type=int, default=100, help="exact neighbours kept (for k <= this)")
    parser.add_argument(
        "--exact-queries", type=int, default=300, help="queries timed for exact QPS per ANN part"
    )
    parser.add_argument(
        "--decay", type=float, default=0.75, help="std of dimension i ~ i^-decay (0: isotropic)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-rows", type=int, default=100_000)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--rerank-factor", type=int, nargs="+", default=[10])
    parser.add_argument(
        "--on-disk", action=argparse.BooleanOptionalAction, default=True, help="IVF lists on disk"
    )
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument(
        "--threads", type=int, default=1, help="FAISS/BLAS threads for searching (both sides)"
    )
    parser.add_argument("--work-dir", default="/tmp/react_index_bench")
    parser.add_argument("--json", default=None, help="write all results here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    # One search thread by default: on a shared machine a descheduled OpenMP thread stalls the whole batch, and
    # exact and ANN search get the same resources. The index build (child process) uses every core.
    faiss.omp_set_num_threads(args.threads)
    emb = ensure_shards(args, work)
    results: dict = {
        "spec": data_spec(args),
        "faiss_threads": faiss.omp_get_max_threads(),
        "cpus": os.cpu_count(),
    }
    for part in args.parts.split(","):
        started = time.perf_counter()
        if part == "exact":
            results["exact"] = exact_part(args, work, emb)
            print(f"exact: {results['exact']['batch_qps']:.1f} QPS batch, "
                  f"{results['exact']['single_query_ms_median']:.0f} ms single", flush=True)  # fmt: skip
        elif part in ("hnsw", "ivfpq"):
            if not (work / "truth.npy").is_file():
                raise SystemExit("run --parts exact first (ground truth)")
            results[part] = ann_part(part, args, work, emb)
            build = results[part]["build"]
            best = results[part]["best_at_target"] or {}
            print(f"{part}: {build['factory']} built in {build['wall_seconds']:.0f} s, peak RSS "
                  f"{build['peak_rss_bytes'] / 2**30:.2f} GiB; exact {results[part]['exact_same_run']['batch_qps']:.1f} "
                  f"QPS; best at recall >= {args.target_recall}: {best}", flush=True)  # fmt: skip
        else:
            raise SystemExit(f"unknown part {part!r}")
        print(f"[{part} took {time.perf_counter() - started:.0f} s]", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
