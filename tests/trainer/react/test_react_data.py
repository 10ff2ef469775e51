"""Subset sources: parquet, img2dataset webdataset tars and files folders, missing images, the batch plan."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch

from tests.support.react_support import toy_image
from trainer.react.data import PairDataset, SubsetError, read_subset, shuffled_batches


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def png_bytes(index: int) -> bytes:
    buffer = io.BytesIO()
    toy_image(index).save(buffer, format="PNG")
    return buffer.getvalue()


def test_webdataset_shards_are_read_and_a_caption_without_image_is_missing(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(shards / "00000.tar", "w") as tar:
        for i in range(3):
            add_member(tar, f"{i:09d}.png", png_bytes(i))
            add_member(tar, f"{i:09d}.txt", f"caption {i}".encode())
        add_member(tar, "000000009.txt", b"image failed to download")
    with pytest.raises(SubsetError, match="1 of 4 subset images are missing"):
        read_subset([shards])
    pairs, report = read_subset([shards], skip_missing=True)
    assert [p.caption for p in pairs] == ["caption 0", "caption 1", "caption 2"]
    assert report.skipped_missing_images == 1
    dataset = PairDataset(pairs, torch.zeros(3, 4, dtype=torch.long), lambda image: image.size)
    assert dataset[1][0] == toy_image(1).size  # decoded from inside the tar


def test_files_folder_and_bad_sources(tmp_path):
    folder = tmp_path / "files" / "00000"
    folder.mkdir(parents=True)
    for i in range(2):
        toy_image(i).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"pair {i}")
    pairs, _ = read_subset([tmp_path / "files"])
    assert [p.caption for p in pairs] == ["pair 0", "pair 1"]
    (tmp_path / "notes.csv").write_text("x")
    with pytest.raises(SubsetError, match="is not a .parquet file"):
        read_subset([tmp_path / "notes.csv"])
    with pytest.raises(SubsetError, match="no subset given"):
        read_subset([])


def test_batch_plan_is_seeded_full_and_splits_across_processes():
    plan = shuffled_batches(10, 4, seed=0, epoch=0)
    assert len(plan) == 2 and all(len(b) == 4 for b in plan) and len({i for b in plan for i in b}) == 8
    assert plan == shuffled_batches(10, 4, seed=0, epoch=0) != shuffled_batches(10, 4, seed=0, epoch=1)
    # Two processes with batch 2 see, per update, the batch one process with batch 4 sees.
    halves = shuffled_batches(10, 2, seed=0, epoch=0)
    assert [halves[0] + halves[1], halves[2] + halves[3]] == plan
