"""Pool readers (parquet, image folder) and clip-retrieval embedding shards: contents, streaming, and errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from react_explorer.embedding.embed_pool import EmbedConfig, rank_slice
from react_explorer.embedding.pool_readers import (
    detect_pool_format,
    read_image_folder,
    read_parquet_pool,
    read_pool,
)
from react_explorer.errors import PoolFormatError
from react_explorer.index.shards import open_embedding_shards, write_embedding_shard
from tests.support.react_support import toy_image, unit_vectors, write_toy_pool


def test_parquet_pool_resolves_paths_and_keeps_columns(tmp_path):
    path = write_toy_pool(tmp_path / "pool", count=6)
    pool = read_pool(path)
    assert len(pool) == 6 and pool.has_image_files
    assert pool.table.column_names == ["key", "image_path", "caption", "url"]
    assert pool.image_files()[2] == (tmp_path / "pool" / "images" / "0002.png").resolve()
    assert pool.captions()[:2] == ["red square", "green square"]
    assert pool.row_names()[1] == "row 1 (key '000000001')"
    assert len(pool.slice(2, 5)) == 3 and pool.slice(2, 5).table.column("key")[0].as_py() == "000000002"


def test_parquet_pool_without_key_or_images(tmp_path):
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": ["https://a/1.jpg", "https://a/2.jpg"], "caption": ["a cat", ""]}), path)
    pool = read_parquet_pool(path)
    assert pool.table.column("key").to_pylist() == ["000000000", "000000001"]
    assert not pool.has_image_files
    with pytest.raises(PoolFormatError, match="has only URLs, no image_path: download the images first"):
        pool.image_files()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"image_path": ["a.png"]}), "no 'caption' column"),
        (pa.table({"caption": ["x"]}), "needs an 'image_path' or 'url' column"),
        (pa.table({"caption": ["x", None], "url": ["u", "v"]}), "row 1 has a null 'caption'"),
        (pa.table({"caption": [1, 2], "url": ["u", "v"]}), "column 'caption' must hold strings"),
        (pa.table({"caption": ["x", "y"], "image_path": ["a.png", None]}), "row 1 has a null 'image_path'"),
        (pa.table({"caption": pa.array([], pa.string()), "url": pa.array([], pa.string())}), "has no rows"),
    ],
)
def test_parquet_pool_errors_name_file_and_row(tmp_path, table, message):
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    with pytest.raises(PoolFormatError, match=message) as info:
        read_parquet_pool(path)
    assert "bad.parquet" in str(info.value)


def test_corrupt_parquet_and_unknown_paths(tmp_path):
    (tmp_path / "broken.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(PoolFormatError, match="cannot read pool parquet .*broken.parquet"):
        read_pool(tmp_path / "broken.parquet")
    (tmp_path / "pool.csv").write_text("a,b\n")
    with pytest.raises(PoolFormatError, match="is not a .parquet file"):
        detect_pool_format(tmp_path / "pool.csv")
    with pytest.raises(PoolFormatError, match="not found"):
        detect_pool_format(tmp_path / "missing")


def test_image_folder_with_sidecar_captions(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("b", "a", "sub/c"):
        toy_image(len(name)).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(f"  caption of {name}\n")
    (folder / "notes.md").write_text("ignored")
    assert detect_pool_format(folder) == "folder"
    pool = read_image_folder(folder)
    assert pool.table.column("key").to_pylist() == ["a", "b", "sub/c"]
    assert pool.captions() == ["caption of a", "caption of b", "caption of sub/c"]
    (folder / "d.png").write_bytes((folder / "a.png").read_bytes())
    with pytest.raises(PoolFormatError, match=r"image .*d.png has no caption file d.txt"):
        read_image_folder(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PoolFormatError, match="holds no images"):
        read_image_folder(tmp_path / "empty")


def _meta(start: int, stop: int) -> pa.Table:
    return pa.table(
        {"url": [f"u{i}" for i in range(start, stop)], "caption": [f"c{i}" for i in range(start, stop)]}
    )


def test_shards_stream_in_order_renormalised_and_sample(tmp_path):
    vectors = unit_vectors(25, 8, seed=4)
    for number, (start, stop) in enumerate([(0, 10), (10, 25)]):
        write_embedding_shard(tmp_path, number, _meta(start, stop), {"image": [vectors[start:stop] * 3.0]}, 8)
    assert detect_pool_format(tmp_path) == "embeddings"
    shards = open_embedding_shards(tmp_path)
    assert (shards.count, shards.dim, shards.modalities) == (25, 8, ("image",))
    chunks = list(shards.iter_chunks("image", chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 4, 2, 4, 4, 4, 3]  # chunks never span shards
    streamed = np.concatenate(chunks)
    np.testing.assert_allclose(np.linalg.norm(streamed, axis=1), 1.0, rtol=1e-5)  # float16 x3 re-normalised
    np.testing.assert_allclose(streamed, vectors, atol=2e-3)
    sample = shards.sample("image", 6, seed=0)
    assert sample.shape == (6, 8)
    assert np.array_equal(sample, shards.sample("image", 6, seed=0))
    assert all(np.abs(streamed - row).max(axis=1).min() < 1e-6 for row in sample)  # real rows
    metadata = list(shards.iter_metadata())
    assert [t.num_rows for t in metadata] == [10, 15]
    assert metadata[1].column("key").to_pylist()[0] == "000000010"  # global row numbers when keys are absent
    with pytest.raises(PoolFormatError, match="have no 'text' vectors"):
        next(shards.iter_chunks("text"))


def test_shard_validation_errors(tmp_path):
    vectors = unit_vectors(6, 4)
    write_embedding_shard(tmp_path, 0, _meta(0, 3), {"image": [vectors[:3]], "text": [vectors[:3]]}, 4)
    write_embedding_shard(tmp_path, 1, _meta(3, 6), {"image": [vectors[3:]], "text": [vectors[3:]]}, 4)
    assert open_embedding_shards(tmp_path).count == 6
    text1 = tmp_path / "text_emb" / "text_emb_1.npy"
    np.save(text1, vectors[3:5])
    with pytest.raises(PoolFormatError, match="shard 1: image and text files have 3 and 2 rows"):
        open_embedding_shards(tmp_path)
    np.save(text1, np.zeros((3, 5), np.float32))
    with pytest.raises(PoolFormatError, match="dimension 5 differs from the first shard's 4"):
        open_embedding_shards(tmp_path)
    data = (tmp_path / "text_emb" / "text_emb_0.npy").read_bytes()
    text1.write_bytes(data[: len(data) - 10])
    with pytest.raises(PoolFormatError, match="text_emb_1.npy \\(corrupt or truncated\\?\\)"):
        open_embedding_shards(tmp_path)
    text1.unlink()
    with pytest.raises(PoolFormatError, match="shard 1 has no text_emb file"):
        open_embedding_shards(tmp_path)
    (tmp_path / "text_emb" / "text_emb_0.npy").unlink()
    pq.write_table(_meta(0, 2), tmp_path / "metadata" / "metadata_0.parquet")
    with pytest.raises(PoolFormatError, match="metadata_0.parquet has 2 rows but the shard's vectors have 3"):
        open_embedding_shards(tmp_path)
    (tmp_path / "metadata" / "metadata_0.parquet").unlink()
    with pytest.raises(PoolFormatError, match="shard 0 has no metadata/metadata_0.parquet"):
        open_embedding_shards(tmp_path)


def test_rank_slices_partition_rows():
    assert [rank_slice(10, r, 3) for r in range(3)] == [(0, 4), (4, 7), (7, 10)]
    assert [rank_slice(2, r, 3) for r in range(3)] == [(0, 1), (1, 2), (2, 2)]
    with pytest.raises(ValueError):
        rank_slice(10, 3, 3)
    with pytest.raises(ValueError, match="modalities"):
        EmbedConfig(modalities=("audio",))
    assert EmbedConfig.tiny().num_workers == 0


def test_npy_row_writer_streams_and_checks_rows(tmp_path):
    from react_explorer.index.npy_stream import NpyRowWriter

    data = np.arange(12, dtype=np.float32).reshape(6, 2)
    with NpyRowWriter(tmp_path / "a.npy", 6, 2, np.float16) as out:
        out.write(data[:4])
        out.write(data[4:])
    loaded = np.load(tmp_path / "a.npy")
    assert loaded.dtype == np.float16 and np.array_equal(loaded, data)
    with pytest.raises(ValueError, match="3 rows written, 6 declared"):
        with NpyRowWriter(tmp_path / "b.npy", 6, 2, np.float32) as out:
            out.write(data[:3])
    with pytest.raises(ValueError, match=r"expected \[rows, 2\] blocks"):
        with NpyRowWriter(tmp_path / "c.npy", 6, 2, np.float32) as out:
            out.write(np.zeros((2, 3), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]  # no partial or temporary file left
