"""``accelerate launch`` with 2 CPU processes: each rank embeds its slice into its own shard, rank 0 indexes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from react_explorer.cli.build_index import main as build_main
from react_explorer.index.clip_index import ClipIndex
from react_explorer.index.shards import open_embedding_shards
from tests.support.paths import REPO_ROOT
from tests.support.react_support import save_random_tiny_clip, write_toy_pool

POOL_SIZE = 21  # odd on purpose: the ranks get 11 and 10 rows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_process_build_equals_single_process(tmp_path):
    clip = save_random_tiny_clip(tmp_path)
    pool = write_toy_pool(tmp_path / "pool", count=POOL_SIZE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # --multi_gpu selects the torchrun launcher; without CUDA build_index asks accelerate for a CPU (gloo) group.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        "-m", "react_explorer.build_index", "--pool", str(pool), "--out", str(tmp_path / "ddp"),
        "--model", f"local-dir:{clip}", "--workers", "0", "--batch-size", "4", "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stderr[-3000:]
    shards = open_embedding_shards(tmp_path / "ddp.embeddings")
    assert [shard.rows for shard in shards.shards] == [11, 10]
    parallel = ClipIndex.load(tmp_path / "ddp")
    assert parallel.manifest.source["processes"] == 2 and parallel.count == POOL_SIZE
    assert build_main(["--pool", str(pool), "--out", str(tmp_path / "single"), "--model", f"local-dir:{clip}",
                       "--workers", "0", "--no-progress"]) == 0  # fmt: skip
    single = ClipIndex.load(tmp_path / "single")
    ids = np.arange(POOL_SIZE)
    for modality in ("image", "text"):
        np.testing.assert_allclose(parallel.vectors(ids, modality), single.vectors(ids, modality), atol=1e-6)
    assert parallel.metadata.equals(single.metadata)
