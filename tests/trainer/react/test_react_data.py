"""Subset sources: parquet, img2dataset webdataset tars and files folders, missing images, the batch plan."""

from __future__ import annotations

import io
import tarfile

import numpy as np
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


def files_subset(tmp_path, count: int):
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(count):
        toy_image(i).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"pair {i}")
    pairs, _ = read_subset([folder])
    return folder, pairs


def to_tensor(image):
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255


def test_preload_decodes_once_and_serves_the_same_tensors(tmp_path):
    folder, pairs = files_subset(tmp_path, 5)
    tokens = torch.arange(10).reshape(5, 2)
    lazy = PairDataset(pairs, tokens, to_tensor)
    expected = [lazy[i] for i in range(5)]
    transformed = PairDataset(pairs, tokens, to_tensor)
    report = transformed.preload(2**20, deterministic=True)
    # 5 images of 3 x 24 x 24 float32, kept as one tensor.
    assert (report.kind, report.images, report.bytes) == ("transformed", 5, 5 * 3 * 24 * 24 * 4)
    decoded = PairDataset(pairs, tokens, to_tensor)
    assert decoded.preload(2**20, deterministic=False).to_dict()["bytes"] == 5 * 24 * 24 * 3
    for png in folder.glob("*.png"):
        png.unlink()  # served from memory from now on: nothing is decoded again
    for dataset in (transformed, decoded):
        for i in range(5):
            assert torch.equal(dataset[i][0], expected[i][0]) and torch.equal(dataset[i][1], tokens[i])
    with pytest.raises(SubsetError, match="cannot decode image"):
        lazy[0]


def test_preload_over_budget_is_skipped_and_decodes_per_access(tmp_path):
    _, pairs = files_subset(tmp_path, 4)
    dataset = PairDataset(pairs, torch.zeros(4, 2, dtype=torch.long), to_tensor)
    report = dataset.preload(4 * 3 * 24 * 24 * 4 - 1, deterministic=True)
    assert (report.kind, report.images, report.bytes) == ("skipped", 0, 4 * 3 * 24 * 24 * 4)
    assert dataset.preload(0, deterministic=False).kind == "skipped"
    assert dataset._tensors is None and dataset._decoded is None
    assert torch.equal(dataset[2][0], to_tensor(toy_image(2)))
