"""Index choice rules, build/load round trips for every index type, verification errors, atomic rebuilds."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pytest

import react_explorer.index.build as index_build
from react_explorer.errors import DimensionMismatchError, IndexBuildError, IndexLoadError, QueryError
from react_explorer.index.build import build_index_dir
from react_explorer.index.clip_index import ClipIndex
from react_explorer.index.plan import GIB, IndexBuildConfig, default_nlist, default_pq_m, plan_index
from react_explorer.index.shards import open_embedding_shards, write_embedding_shard
from react_explorer.retrieval.algorithms import exact_top_k, recall_at_k
from tests.support.react_support import unit_vectors
from vision_common.manifest import sha256_file

DIM = 32


def write_shards(root, image: np.ndarray, text: np.ndarray, shard_rows: int) -> None:
    """Split the vectors into shards of ``shard_rows`` in clip-retrieval's layout (float32 on disk)."""
    for number, start in enumerate(range(0, len(image), shard_rows)):
        stop = min(start + shard_rows, len(image))
        meta = pa.table(
            {
                "key": [f"{i:09d}" for i in range(start, stop)],
                "caption": [f"caption {i}" for i in range(start, stop)],
                "url": [f"https://example.com/{i}.png" for i in range(start, stop)],
            }
        )
        vectors = {"image": [image[start:stop]], "text": [text[start:stop]]}
        write_embedding_shard(root, number, meta, vectors, DIM, dtype=np.dtype(np.float32))


@pytest.fixture(scope="module")
def vectors():
    return unit_vectors(2000, DIM, seed=1), unit_vectors(2000, DIM, seed=2)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, vectors):
    root = tmp_path_factory.mktemp("emb")
    write_shards(root, *vectors, shard_rows=700)  # 3 shards: 700, 700, 600
    return open_embedding_shards(root)


def build(shards, out, **overrides):
    cfg = IndexBuildConfig.tiny(**overrides)
    return build_index_dir(shards, out, cfg, model="test-model", progress=False)


def test_plan_rules_hand_computed():
    cfg = IndexBuildConfig()
    assert plan_index(99_999, 512, cfg).kind == "flat"
    hnsw = plan_index(100_000, 512, cfg)
    assert (hnsw.kind, hnsw.factory) == ("hnsw", "HNSW32")
    # 1M x 512 @ 4G -> HNSW32 (2,304 B per vector = 2.30e9 B), as autofaiss derives.
    assert plan_index(1_000_000, 512, cfg).estimated_bytes == 1_000_000 * 2304
    big = plan_index(2_000_000, 512, cfg)  # HNSW would need 4.6e9 B > 4 GiB
    assert (big.kind, big.factory, big.on_disk) == ("ivfpq", "IVF1024,PQ64", False)
    assert big.estimated_bytes == 2_000_000 * 72 + 1024 * 512 * 4
    assert big.params["train_size"] == 65_536 and big.stores_vectors
    tight = plan_index(2_000_000, 512, IndexBuildConfig(max_index_memory=100 << 20))
    assert tight.on_disk and tight.estimated_bytes == 1024 * 512 * 4  # only the centroids stay in memory


def test_plan_defaults_and_errors():
    assert default_nlist(1_000_000) == 1024 and default_nlist(2000) == 32 and default_nlist(100) == 2
    assert [default_pq_m(d) for d in (512, 768, 128, 32, 100)] == [64, 64, 64, 16, 50]
    with pytest.raises(IndexBuildError, match="at least 1000 vectors"):
        plan_index(500, DIM, IndexBuildConfig(index_type="ivfpq"))
    with pytest.raises(IndexBuildError, match="pq_m=30 must divide"):
        plan_index(5000, DIM, IndexBuildConfig(index_type="ivfpq", pq_m=30))
    with pytest.raises(IndexBuildError, match="needs >= 39000 vectors"):
        plan_index(5000, DIM, IndexBuildConfig(index_type="ivfpq", ivf_nlist=1000))
    with pytest.raises(ValueError, match="on_disk=True needs an IVF index"):
        IndexBuildConfig(index_type="hnsw", on_disk=True)
    with pytest.raises(ValueError, match="index_type"):
        IndexBuildConfig(index_type="lsh")
    assert IndexBuildConfig(max_index_memory=GIB).max_index_memory == 1 << 30


@pytest.mark.parametrize(
    ("index_type", "on_disk", "min_recall"),
    [("flat", None, 1.0), ("hnsw", None, 0.95), ("ivfpq", False, 0.9), ("ivfpq", True, 0.9)],
)
def test_round_trip_and_recall(tmp_path, shards, vectors, index_type, on_disk, min_recall):
    manifest = build(shards, tmp_path / "idx", index_type=index_type, on_disk=on_disk)
    assert (manifest.count, manifest.dim, manifest.model) == (2000, DIM, "test-model")
    # The directory still loads after a move: on-disk lists are found next to the index file.
    os.rename(tmp_path / "idx", tmp_path / "moved")
    index = ClipIndex.load(tmp_path / "moved")
    assert index.modalities == ("image", "text") and index.metadata.num_rows == 2000
    image, text = vectors
    queries = unit_vectors(50, DIM, seed=3)
    for modality, stored in (("image", image), ("text", text)):
        exact_scores, exact_ids = exact_top_k(queries, stored, 10)
        result = index.search(queries, 10, modality)
        assert recall_at_k(result.ids, exact_ids, 10) >= min_recall
        found = result.ids[0][:3]
        np.testing.assert_allclose(index.vectors(found, modality), stored[found], atol=1e-3)
        if index_type in ("flat", "ivfpq"):  # exact scores (re-ranked from stored vectors for IVF-PQ)
            hit = result.ids == exact_ids
            np.testing.assert_allclose(result.scores[hit], exact_scores[hit], atol=2e-3)
    rows = index.rows([1999, 0])
    assert [row["key"] for row in rows] == ["000001999", "000000000"]
    assert rows[0]["caption"] == "caption 1999"
    plan = manifest.plan("image")
    assert plan["kind"] == index_type
    if index_type == "ivfpq":
        assert plan["on_disk"] is on_disk and ("image.ivfdata" in manifest.files) is on_disk
        assert "image_emb.npy" in manifest.files


def test_search_pads_when_k_exceeds_count_and_checks_dims(tmp_path, vectors):
    root = tmp_path / "emb"
    write_shards(root, vectors[0][:5], vectors[1][:5], shard_rows=5)
    build(open_embedding_shards(root), tmp_path / "idx")
    index = ClipIndex.load(tmp_path / "idx")
    result = index.search(vectors[0][:1], 8, "image")
    assert result.ids.shape == (1, 8) and result.ids[0, 0] == 0 and (result.ids[0, 5:] == -1).all()
    assert np.isneginf(result.scores[0, 5:]).all()
    with pytest.raises(DimensionMismatchError, match=r"dimension 16 but index .* holds 32-d vectors"):
        index.search(unit_vectors(1, 16), 3, "image")
    with pytest.raises(QueryError, match="k must be a positive int"):
        index.search(vectors[0][:1], 0, "image")
    with pytest.raises(QueryError, match="ids must be in"):
        index.rows([5])


@pytest.fixture
def built(tmp_path, shards):
    build(shards, tmp_path / "idx", index_type="hnsw")
    return tmp_path / "idx"


def _rewrite_manifest(root, change):
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _record_file(root, name):
    def change(data):
        data["files"][name] = {"bytes": (root / name).stat().st_size, "sha256": sha256_file(root / name)}

    _rewrite_manifest(root, change)


def test_truncated_and_corrupt_files_are_named(built):
    index_file = built / "image.index"
    data = index_file.read_bytes()
    index_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexLoadError, match=r"image.index has \d+ bytes, the manifest says \d+ \(truncated"):
        ClipIndex.load(built)
    # Truncated and recorded in the manifest (as if the manifest had been regenerated): FAISS itself fails.
    _record_file(built, "image.index")
    with pytest.raises(IndexLoadError, match="cannot read image.index"):
        ClipIndex.load(built)
    text_file = built / "text.index"
    flipped = bytearray(text_file.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    text_file.write_bytes(bytes(flipped))
    _record_file(built, "image.index")
    with pytest.raises(IndexLoadError, match="text.index is corrupt"):
        ClipIndex.load(built)


def test_metadata_and_manifest_errors(built):
    (built / "metadata.parquet").write_bytes(b"PAR1 not really")
    _record_file(built, "metadata.parquet")
    with pytest.raises(IndexLoadError, match="cannot read metadata.parquet"):
        ClipIndex.load(built)
    pa.parquet.write_table(
        pa.table({"key": ["a"], "caption": ["b"], "url": ["c"]}), built / "metadata.parquet"
    )
    _record_file(built, "metadata.parquet")
    with pytest.raises(IndexLoadError, match="metadata.parquet has 1 rows, manifest count is 2000"):
        ClipIndex.load(built)
    _rewrite_manifest(built, lambda data: data["files"].update({"gone.bin": {"bytes": 1, "sha256": "x"}}))
    with pytest.raises(IndexLoadError, match="file gone.bin listed in manifest.json is missing"):
        ClipIndex.load(built)
    _rewrite_manifest(built, lambda data: data.update(count="many"))
    with pytest.raises(IndexLoadError, match="field 'count' must be a int"):
        ClipIndex.load(built)
    (built / "manifest.json").write_text("{not json")
    with pytest.raises(IndexLoadError, match="manifest.json is corrupt"):
        ClipIndex.load(built)
    (built / "manifest.json").unlink()
    with pytest.raises(IndexLoadError, match="not an index directory"):
        ClipIndex.load(built)
    with pytest.raises(IndexLoadError, match="not found"):
        ClipIndex.load(built / "nope")


def test_count_mismatch_between_index_and_manifest(built, tmp_path, vectors):
    other = tmp_path / "other_emb"
    write_shards(other, vectors[0][:100], vectors[1][:100], shard_rows=100)
    build(open_embedding_shards(other), tmp_path / "small", index_type="hnsw")
    shutil.copy(tmp_path / "small" / "image.index", built / "image.index")
    _record_file(built, "image.index")
    with pytest.raises(IndexLoadError, match="image.index holds 100 vectors, manifest count is 2000"):
        ClipIndex.load(built)


def test_failed_build_leaves_previous_index_untouched(built, shards, monkeypatch):
    before = {p.name: sha256_file(p) for p in built.iterdir()}
    real_write = index_build.faiss.write_index

    def fail_on_text(index, path):
        if path.endswith("text.index"):
            raise RuntimeError("disk full (simulated)")
        real_write(index, path)

    monkeypatch.setattr(index_build.faiss, "write_index", fail_on_text)
    with pytest.raises(RuntimeError, match="simulated"):
        build(shards, built, index_type="flat")
    assert {p.name: sha256_file(p) for p in built.iterdir()} == before
    assert sorted(p.name for p in built.parent.iterdir()) == ["idx"]  # no temporary directory left behind
    assert ClipIndex.load(built).manifest.plan("image")["kind"] == "hnsw"
    with pytest.raises(RuntimeError):
        build(shards, built.parent / "fresh", index_type="flat")
    assert not (built.parent / "fresh").exists()


def test_build_rejects_missing_modality(tmp_path, vectors):
    root = tmp_path / "emb"
    meta = pa.table({"key": ["0", "1"], "caption": ["a", "b"], "url": ["u0", "u1"]})
    write_embedding_shard(root, 0, meta, {"text": [vectors[1][:2]]}, DIM)
    shards = open_embedding_shards(root)
    assert shards.modalities == ("text",)
    with pytest.raises(IndexBuildError, match=r"no \['image'\] vectors"):
        build_index_dir(shards, tmp_path / "idx", IndexBuildConfig.tiny(), model=None, modalities=("image",))


@pytest.mark.slow
def test_indexing_precomputed_embeddings_does_not_import_torch():
    """Importing torch costs ~650 MB of RSS; building from embeddings and searching must not pay it."""
    import subprocess
    import sys

    code = "import sys, react_explorer.cli.build_index, react_explorer.index.clip_index; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
