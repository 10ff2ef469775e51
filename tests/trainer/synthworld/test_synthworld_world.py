"""Whole-world generation on the tiny preset: determinism, manifest, disjointness, formats, failure modes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from trainer.synthworld.cli import main
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world
from vision_common.atomic import OutputNotWritableError

TINY = WorldConfig.preset("tiny")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow  # workers=2 renders in a process pool
def test_same_seed_gives_identical_bytes_for_any_worker_count(tiny_world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_world(again, TINY, seed=0, workers=2)
    first, second = _tree(tiny_world), _tree(again)
    assert first.keys() == second.keys()
    different = [name for name in first if first[name] != second[name]]
    assert different == []
    assert sum(name.endswith(".png") for name in first) == 40 + 20 + 80 + 80 + 192 + 600


def test_different_seed_differs(tiny_world: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_world(other, TINY, seed=1, workers=1)
    first, second = _tree(tiny_world), _tree(other)
    for name in ("scenes/annotations/instances_train.json", "pool/pool.parquet", "eval/vqa.jsonl"):
        assert first[name] != second[name]
    shared_pngs = [n for n in first if n.endswith(".png") and n in second]
    assert sum(first[n] == second[n] for n in shared_pngs) < len(shared_pngs) * 0.01


def test_manifest_hashes_match_files_and_record_counts(tiny_world: Path) -> None:
    manifest = json.loads((tiny_world / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["preset"] == "tiny"
    assert manifest["config"]["pool_size"] == 600
    for relative, digest in manifest["sha256"].items():
        assert hashlib.sha256((tiny_world / relative).read_bytes()).hexdigest() == digest, relative
    expected = {
        f"scenes/annotations/{k}_{s}.json" for k in ("instances", "captions") for s in ("train", "test")
    }
    expected |= {"pool/pool.parquet", "pool/pool_truth.parquet"} | {
        f"eval/{n}.jsonl" for n in ("vqa", "pope", "mc", "detail")
    }
    assert expected <= set(manifest["sha256"])
    counts = manifest["counts"]
    assert counts["train_scenes"] == 40 and counts["test_scenes"] == 20 and counts["pool_pairs"] == 600
    assert counts["task_species_images"] == 24 * 8
    assert len(list((tiny_world / "pool/images").glob("*.png"))) == 600


def test_pool_never_contains_task_or_test_scene_images(tiny_world: Path) -> None:
    def digests(paths: list[Path]) -> set[str]:
        return {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}

    held_out = digests(
        list((tiny_world / "tasks").rglob("*.png")) + list((tiny_world / "scenes/images/test").glob("*.png"))
    )
    pool = digests(list((tiny_world / "pool/images").glob("*.png")))
    assert len(held_out) > 300 and len(pool) > 500
    assert held_out.isdisjoint(pool)
    check = json.loads((tiny_world / "manifest.json").read_text())["disjointness"]
    assert check["overlap_after_regeneration"] == 0 and check["pool_images_checked"] == 600


def test_pool_parquet_schema_and_rows(tiny_world: Path) -> None:
    table = pq.read_table(tiny_world / "pool/pool.parquet")
    assert table.schema.names == ["key", "image_path", "caption", "url", "width", "height"]
    assert table.schema.field("key").type == pa.string() and table.schema.field("caption").type == pa.string()
    rows = table.to_pylist()
    assert [row["key"] for row in rows] == [f"{i:09d}" for i in range(600)]
    for row in rows[:50]:
        assert row["url"] == f"synthworld://pool/{row['key']}.png"
        with Image.open(tiny_world / "pool" / row["image_path"]) as image:
            assert image.size == (row["width"], row["height"])
        assert 64 <= row["width"] <= 128 and 64 <= row["height"] <= 128
    truth = pq.read_table(tiny_world / "pool/pool_truth.parquet")
    assert truth.schema.names == ["key", "objects", "mismatched"]
    assert truth.schema.field("mismatched").type == pa.bool_()
    objects = json.loads(truth.column("objects")[0].as_py())
    assert 1 <= len(objects) <= 3 and {"category", "bbox", "color", "species"} <= set(objects[0])


def test_png_files_carry_no_metadata(tiny_world: Path) -> None:
    png = next((tiny_world / "scenes/images/train").glob("*.png")).read_bytes()
    for chunk in (b"tEXt", b"iTXt", b"zTXt", b"tIME", b"pHYs"):
        assert chunk not in png


def test_unwritable_output_raises_and_leaves_nothing(tmp_path: Path) -> None:
    # A regular file where a parent directory should be: not creatable, even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritableError, match="blocker"):
        generate_world(blocker / "world", TINY, seed=0)
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"] and blocker.read_text() == "x"


def test_read_only_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputNotWritableError, match="locked"):
            generate_world(locked / "world", TINY, seed=0)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_failure_midway_keeps_the_previous_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "world"
    out.mkdir()
    (out / "keep.txt").write_text("old")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("trainer.synthworld.world.build_eval_sets", broken)
    with pytest.raises(RuntimeError, match="boom"):
        generate_world(out, TINY, seed=0)
    assert [p.name for p in tmp_path.iterdir()] == ["world"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_generates_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["generate", "--out", str(tmp_path / "w"), "--preset", "tiny", "--seed", "3", "--workers", "1"])
        == 0
    )
    assert "pool_pairs=600" in capsys.readouterr().out
    assert json.loads((tmp_path / "w/manifest.json").read_text())["seed"] == 3
    with pytest.raises(SystemExit):
        main(["generate", "--out", str(tmp_path / "x"), "--preset", "huge"])


def test_preview_sheet_is_small(tiny_world: Path, tmp_path: Path) -> None:
    assert main(["preview", "--world", str(tiny_world), "--out", str(tmp_path / "sheet.png")]) == 0
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.width == 1024 and sheet.height > 300
    assert (tmp_path / "sheet.png").stat().st_size < 300_000


def test_world_directory_is_readable_by_others(tiny_world: Path) -> None:
    assert tiny_world.stat().st_mode & 0o755 == 0o755


def test_config_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="large_glyph_scale"):
        WorldConfig.preset("tiny", large_glyph_scale=3, regular_glyph_scale=3)
    with pytest.raises(ValueError, match="pool_mismatch_rate"):
        WorldConfig.preset("tiny", pool_mismatch_rate=1.5)
    with pytest.raises(ValueError, match="scene_size"):
        WorldConfig.preset("tiny", scene_size=(200, 100))
    with pytest.raises(ValueError, match="unknown preset"):
        WorldConfig.preset("huge")
