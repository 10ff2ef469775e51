"""``accelerate launch`` with 2 CPU processes (gloo DDP): finite losses and bit-identical replicas."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import pytest

from tests.support.llava_fixtures import stage2_records, write_json
from tests.support.paths import REPO_ROOT
from trainer.runtime.checkpoint import latest_checkpoint, load_checkpoint, state_digest
from trainer.runtime.metrics import read_metrics


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_two_process_cpu_ddp_keeps_replicas_identical(tmp_path, tiny_llava_parts):
    parts = tiny_llava_parts
    data = write_json(tmp_path / "stage2.json", stage2_records())
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    # --multi_gpu selects the torchrun launcher; without CUDA the runtime's Accelerator(cpu=True) makes it
    # a MULTI_CPU (gloo) group. Stage 2 from parts trains projector + LLM with DDP gradient all-reduce.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        "-m", "trainer.llava.train", "--config", "tiny", "--stage", "2", "--data", str(data),
        "--images", str(parts.images), "--out", str(out), "--vision-tower", str(parts.vision),
        "--language-model", str(parts.lm), "--tokenizer", str(parts.tokenizer), "--max-steps", "3",
        "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "run_config.json").read_text())["world_size"] == 2
    metrics = read_metrics(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all(math.isfinite(m["loss"]) for m in metrics)
    checkpoint = load_checkpoint(latest_checkpoint(out / "checkpoints"))
    digests = checkpoint.state["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] == state_digest(checkpoint.trainable)
    # 2 processes x micro-batch 2 per update
    assert checkpoint.state["samples"] == 3 * 2 * 2 and checkpoint.state["world_size"] == 2
    assert (out / "final" / "model.safetensors").is_file()
