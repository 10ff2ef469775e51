"""``accelerate launch`` with 2 CPU processes (gloo DDP): identical replicas, and the gathered gamma-positive loss
and its gradients equal one process training on the whole batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from react_explorer.customized.model_dir import load_model_dir
from tests.support.react_support import save_random_tiny_clip, write_toy_pool
from trainer.react.__main__ import main
from trainer.runtime.checkpoint import latest_checkpoint
from trainer.runtime.metrics import read_metrics

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    clip = save_random_tiny_clip(tmp_path)
    pool = write_toy_pool(tmp_path / "pool", count=24)
    # Repeated captions ("red square" x3) make the positives span both ranks' halves of the global batch.
    common = [
        "--subset",
        str(pool),
        "--base",
        str(clip),
        "--preset",
        "tiny",
        "--max-steps",
        "3",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        "-m", "trainer.react", "train", *common, "--micro-batch-size", "4", "--out", str(tmp_path / "ddp"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=380)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((latest_checkpoint(tmp_path / "ddp" / "checkpoints") / "state.json").read_text())
    assert state["world_size"] == 2 and len(set(state["replica_digests"])) == 1  # bit-identical replicas
    assert main(["train", *common, "--micro-batch-size", "8", "--out", str(tmp_path / "one")]) == 0
    ddp = [m["loss"] for m in read_metrics(tmp_path / "ddp" / "metrics.jsonl")]
    one = [m["loss"] for m in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    assert len(ddp) == len(one) == 3
    assert ddp == pytest.approx(one, abs=1e-5)
    # The gradient norms catch a wrong gradient scale (e.g. 1/world_size), which AdamW's updates would hide.
    ddp_norms = [m["grad_norm"] for m in read_metrics(tmp_path / "ddp" / "metrics.jsonl")]
    one_norms = [m["grad_norm"] for m in read_metrics(tmp_path / "one" / "metrics.jsonl")]
    assert ddp_norms == pytest.approx(one_norms, rel=1e-4) and min(one_norms) > 0
    a = load_model_dir(tmp_path / "ddp" / "final").model.state_dict()
    b = load_model_dir(tmp_path / "one" / "final").model.state_dict()
    moved = [k for k in a if "alpha" in k and not torch.equal(a[k], torch.zeros(()))]
    assert moved  # the comparison below is not between two untouched models
    # Weights after 3 AdamW updates at lr 1e-2 (each moves a weight by up to 1e-2): Adam divides by sqrt(v) + eps,
    # which turns fp32 summation-order differences of near-zero gradients into ~1e-5 differences, so the weights
    # are compared at 1e-4 (1 % of one update); the losses above agree to 1e-5.
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-4, msg=key)
