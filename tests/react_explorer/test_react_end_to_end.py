"""build_index and retrieve CLIs end to end on a 24-pair toy pool with a random-weight tiny CLIP.

With random weights nothing is semantically right, but identical texts and images still embed identically, so a
T2T query equal to a caption must return exactly the rows with that caption at similarity 1 (within float16
storage error), and an image query must return that image first.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import pyarrow.parquet as pq
import pytest

from react_explorer.cli.build_index import main as build_main
from react_explorer.cli.retrieve import main as retrieve_main
from react_explorer.index.clip_index import ClipIndex
from tests.support.react_support import save_random_tiny_clip, toy_caption, write_toy_pool
from vision_common.manifest import sha256_file
from vision_common.tiny_clip import TinyClipConfig, create_tiny_clip, save_open_clip_dir

POOL_SIZE = 24


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    clip = save_random_tiny_clip(root)
    pool = write_toy_pool(root / "pool", count=POOL_SIZE)
    rc = build_main(["--pool", str(pool), "--out", str(root / "idx"), "--model", f"local-dir:{clip}",
                     "--workers", "0", "--batch-size", "8", "--no-progress"])  # fmt: skip
    assert rc == 0
    (root / "exact.txt").write_text("{}\n")
    return root, clip, pool


def retrieve(args, capsys):
    rc = retrieve_main(args)
    return rc, capsys.readouterr()


def test_build_writes_manifest_shards_and_metadata(world):
    root, clip, pool = world
    index = ClipIndex.load(root / "idx")
    assert index.model == f"local-dir:{clip.resolve()}"
    assert (index.count, index.dim, index.modalities) == (POOL_SIZE, 32, ("image", "text"))
    assert index.manifest.source["processes"] == 1 and index.manifest.source["pool_format"] == "parquet"
    assert index.metadata.column("caption").to_pylist() == [toy_caption(i) for i in range(POOL_SIZE)]
    assert sorted(p.name for p in (root / "idx.embeddings" / "img_emb").iterdir()) == ["img_emb_0.npy"]


def test_t2t_exact_caption_returns_those_rows(world, capsys, tmp_path):
    root, _, _ = world
    out = tmp_path / "subset.parquet"
    rc, output = retrieve(["--index", str(root / "idx"), "--classes", "red square, blue circle",
                           "--templates", str(root / "exact.txt"), "--mode", "t2t", "--k", "6", "--no-dedup",
                           "--out", str(out)], capsys)  # fmt: skip
    assert rc == 0, output.err
    table = pq.read_table(out)
    for column in ("url", "image_path", "caption", "similarity", "class", "query", "hits", "key", "id"):
        assert column in table.column_names
    rows = table.to_pylist()
    assert [r["class"] for r in rows] == ["red square"] * 6 + ["blue circle"] * 6
    for name in ("red square", "blue circle"):
        ranked = [r for r in rows if r["class"] == name]
        expected = {i for i in range(POOL_SIZE) if toy_caption(i) == name}  # 3 rows each
        assert {r["id"] for r in ranked[:3]} == expected
        assert all(r["caption"] == name and r["similarity"] > 0.998 for r in ranked[:3])
        assert all(r["caption"] != name and r["similarity"] < ranked[2]["similarity"] for r in ranked[3:])
        assert json.loads(ranked[0]["hits"])[0]["query"] == name and ranked[0]["query"] == name
    assert "red square: 6 pairs (0 near-duplicates removed)" in output.out


def test_image_query_finds_itself_and_dedup_keeps_it(world, capsys, tmp_path):
    root, _, pool = world
    out = tmp_path / "img.parquet"
    image = pool.parent / "images" / "0005.png"
    rc, output = retrieve(["--index", str(root / "idx"), "--query-image", str(image), "--k", "4",
                           "--out", str(out)], capsys)  # fmt: skip
    assert rc == 0, output.err
    rows = pq.read_table(out).to_pylist()
    assert rows[0]["id"] == 5 and rows[0]["similarity"] > 0.998 and rows[0]["class"] == "0005"
    assert 1 <= len(rows) <= 4


def test_bad_input_gives_one_line_errors(world, capsys, tmp_path):
    root, _, _ = world
    base = ["--index", str(root / "idx"), "--out", str(tmp_path / "x.parquet")]
    cases = [
        (["--classes", " , "], "the class list is empty"),
        (["--classes", "a", "--templates", str(tmp_path / "none.txt")], "template file .*none.txt not found"),
        (["--query-image", str(tmp_path / "none.png")], "query image .*none.png not found"),
        (["--classes", "a", "--index", str(tmp_path / "no_index")], "index directory .*no_index not found"),
    ]
    for extra, message in cases:
        rc, output = retrieve(base + extra, capsys)
        assert rc == 2 and output.err.startswith("error: ") and output.err.count("\n") == 1
        assert re.search(message, output.err), output.err
    assert not (tmp_path / "x.parquet").exists()


def test_model_dimension_mismatch(world, capsys, tmp_path):
    root, clip, _ = world
    cfg = replace(TinyClipConfig.tiny(), embed_dim=16)
    model, _, _, _ = create_tiny_clip(cfg, clip, seed=0)
    other = save_open_clip_dir(model, cfg, tmp_path / "clip16", tokenizer_dir=clip)
    rc, output = retrieve(["--index", str(root / "idx"), "--classes", "red square", "--model", f"local-dir:{other}",
                           "--out", str(tmp_path / "x.parquet")], capsys)  # fmt: skip
    assert rc == 2
    assert "has dimension 16 but index" in output.err and "holds 32-d vectors" in output.err


def test_missing_pool_images_at_build_and_at_retrieval(world, capsys, tmp_path):
    root, clip, pool = world
    copy = tmp_path / "pool"
    shutil.copytree(pool.parent, copy)
    (copy / "images" / "0003.png").unlink()
    index_dir = tmp_path / "idx"
    shutil.copytree(root / "idx", index_dir)
    before = sha256_file(index_dir / "manifest.json")
    rc = build_main(["--pool", str(copy / "pool.parquet"), "--out", str(index_dir), "--model", f"local-dir:{clip}",
                     "--workers", "0", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "1 of 24 pool images are missing (first: row 3 (key '000000003')" in err
    assert sha256_file(index_dir / "manifest.json") == before  # the previous index is untouched
    # Retrieval from an index whose pool lost an image after indexing.
    rebuilt = tmp_path / "idx2"
    (copy / "images" / "0003.png").write_bytes((pool.parent / "images" / "0003.png").read_bytes())
    assert build_main(["--pool", str(copy / "pool.parquet"), "--out", str(rebuilt), "--model", f"local-dir:{clip}",
                       "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    (copy / "images" / "0003.png").unlink()
    args = ["--index", str(rebuilt), "--classes", "yellow square", "--templates", str(root / "exact.txt"),
            "--mode", "t2t", "--k", "24", "--no-dedup", "--out", str(tmp_path / "s.parquet")]  # fmt: skip
    rc, output = retrieve(args, capsys)
    assert rc == 2 and "1 retrieved rows point at missing pool images (first: key '000000003'" in output.err
    rc, output = retrieve([*args, "--skip-missing-images"], capsys)
    assert rc == 0 and "dropped 1 rows" in output.err
    assert 3 not in pq.read_table(tmp_path / "s.parquet").column("id").to_pylist()


def test_foreign_embeddings_dir_is_never_cleared(world, capsys, tmp_path):
    root, clip, pool = world
    foreign = tmp_path / "laion_embeddings"
    shutil.copytree(root / "idx.embeddings", foreign)
    (foreign / ".written_by_react_explorer").unlink()
    rc = build_main(["--pool", str(pool), "--out", str(tmp_path / "idx"), "--model", f"local-dir:{clip}",
                     "--embeddings-dir", str(foreign), "--workers", "0", "--no-progress"])  # fmt: skip
    assert rc == 2 and "holds embedding shards that build_index did not write" in capsys.readouterr().err
    assert (foreign / "img_emb" / "img_emb_0.npy").is_file() and not (tmp_path / "idx").exists()


def test_precomputed_embeddings_index_needs_a_model_to_query(world, capsys, tmp_path):
    root, clip, _ = world
    rc = build_main(["--pool", str(root / "idx.embeddings"), "--out", str(tmp_path / "idx"), "--index-type",
                     "hnsw", "--modalities", "text", "--no-progress"])  # fmt: skip
    assert rc == 0
    index = ClipIndex.load(tmp_path / "idx")
    assert index.model is None and index.modalities == ("text",)
    assert index.manifest.plan("text")["factory"] == "HNSW32"
    args = ["--index", str(tmp_path / "idx"), "--classes", "green circle", "--templates", str(root / "exact.txt"),
            "--mode", "t2t", "--k", "3", "--no-dedup", "--out", str(tmp_path / "s.parquet")]  # fmt: skip
    rc, output = retrieve(args, capsys)
    assert rc == 2 and "does not record its model; pass --model" in output.err
    rc, output = retrieve([*args, "--model", f"local-dir:{clip}"], capsys)
    assert rc == 0, output.err
    assert {r["caption"] for r in pq.read_table(tmp_path / "s.parquet").to_pylist()} == {"green circle"}


def test_free_text_and_more_like_this_in_process(world):
    from react_explorer.embedding.encoders import load_encoder
    from react_explorer.embedding.model_spec import parse_model_spec
    from react_explorer.errors import QueryError
    from react_explorer.retrieval.class_queries import RetrievalConfig, more_like_this, search_text

    root, clip, _ = world
    index = ClipIndex.load(root / "idx")
    encoder = load_encoder(parse_model_spec(f"local-dir:{clip}"))
    cfg = RetrievalConfig.tiny(mode="t2t", dedup=False)
    found = search_text(index, encoder, "  blue square ", cfg).per_class["blue square"]
    assert {hit.id for hit in found[:3]} == {2, 10, 18} and found[0].query == "blue square"
    like = more_like_this(index, 7, RetrievalConfig.tiny(dedup=False)).per_class["like #7"]
    assert like[0].id == 7 and like[0].similarity == pytest.approx(1.0, abs=2e-3) and len(like) == 5
    with pytest.raises(QueryError, match="the text query is empty"):
        search_text(index, encoder, "   ", cfg)
