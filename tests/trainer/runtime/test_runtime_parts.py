"""Runtime pieces: LR schedule values, data-order sharding, checkpoints (RNG, pruning, errors), metrics."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from trainer.runtime.checkpoint import (
    CheckpointError,
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_trainable_state,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
    state_digest,
    trainable_state,
)
from trainer.runtime.config import RuntimeConfig
from trainer.runtime.data_order import DataOrder, DataPosition
from trainer.runtime.metrics import MetricsLog, read_metrics, truncate_after_step
from trainer.runtime.schedule import ParamGroup, build_optimizer, lr_multiplier, warmup_steps


def test_lr_multiplier_hand_computed():
    cfg = RuntimeConfig(warmup_ratio=0.2, min_lr_ratio=0.1)
    # 10 updates, warmup ceil(2.0) = 2: 1/2, 2/2, then cosine over the remaining 8 to 0.1.
    assert warmup_steps(10, 0.2) == 2
    values = [lr_multiplier(step, 10, cfg) for step in range(10)]
    assert values[0] == pytest.approx(0.5)
    assert values[1] == pytest.approx(1.0)
    assert values[2] == pytest.approx(1.0)  # progress 0
    assert values[6] == pytest.approx(0.1 + 0.9 * 0.5)  # progress 4/8: cos(pi/2) = 0
    assert values[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    constant = RuntimeConfig(warmup_ratio=0.0, schedule="constant")
    assert [lr_multiplier(s, 5, constant) for s in range(5)] == [1.0] * 5


def test_runtime_config_rejects_contradictions():
    for bad in (
        {"learning_rate": 0.0},
        {"learning_rate": -1e-3},
        {"warmup_ratio": 1.0},
        {"grad_accum": 0},
        {"max_steps": 0},
        {"precision": "fp16"},
        {"schedule": "linear"},
        {"adam_betas": (0.9, 1.0)},
    ):
        with pytest.raises(ValueError, match="RuntimeConfig"):
            RuntimeConfig(**bad)


def test_optimizer_groups_split_decay_and_scale_lr():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [
        ParamGroup("a", tuple(model[0].parameters()), 2.0),
        ParamGroup("b", tuple(model[1].parameters())),
    ]
    optimizer = build_optimizer(groups, names, RuntimeConfig(learning_rate=0.1, weight_decay=0.5))
    summary = [
        (g["group_name"], g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups
    ]
    # Linear weight decays; its bias and both LayerNorm vectors do not. "b" has no 2-D tensor.
    assert summary == [("a", 0.2, 0.5, 1), ("a", 0.2, 0.0, 1), ("b", 0.1, 0.0, 2)]
    with pytest.raises(ValueError, match="lr_scale"):
        ParamGroup("c", (), 0.0)


def test_data_order_shards_every_micro_batch_once_and_drops_the_tail():
    plan = [
        [i] for i in range(11)
    ]  # 11 micro-batches; 2 ranks x accum 2 = 4 per update -> 2 updates, 3 skipped
    orders = [DataOrder(lambda epoch: plan, world_size=2, rank=r, grad_accum=2) for r in (0, 1)]
    assert orders[0].updates_in_epoch(0) == 2
    assert orders[0].skipped_in_epoch(0) == 3
    # update 0: slots a=0,1 -> micro-batches (0*2+a)*2 + r
    assert orders[0].update_batches(0, 0) == [[0], [2]]
    assert orders[1].update_batches(0, 0) == [[1], [3]]
    used = sorted(b[0] for order in orders for b in order.rank_batches(DataPosition()))
    assert used == list(range(8))
    # Resuming mid-epoch continues exactly where the full run would be.
    assert orders[1].rank_batches(DataPosition(0, 1)) == orders[1].rank_batches(DataPosition())[2:]
    assert orders[0].advance(DataPosition(0, 1)) == DataPosition(1, 0)
    with pytest.raises(ValueError, match="fewer than one update"):
        DataOrder(lambda epoch: plan[:3], world_size=2, grad_accum=2).updates_in_epoch(0)


def test_rng_capture_restore_round_trip():
    state = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(state)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def _save(root, step, model):
    return save_checkpoint(
        root,
        trainable=trainable_state(model),
        optimizer={"state": {}, "param_groups": []},
        scheduler={"last_epoch": step},
        rng=[capture_rng()],
        state={"step": step, "position": {"epoch": 0, "step_in_epoch": step}},
    )


def test_checkpoint_round_trip_prune_and_errors(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    for step in (2, 4, 6):
        _save(tmp_path, step, model)
    (tmp_path / ".step-00000008.abc.tmp").mkdir()  # an interrupted write is never a checkpoint
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 4, 6]
    loaded = load_checkpoint(latest_checkpoint(tmp_path))
    assert loaded.step == 6 and set(loaded.trainable) == {"weight"}
    assert state_digest(loaded.trainable) == state_digest(trainable_state(model))
    other = torch.nn.Linear(3, 2)
    other.bias.requires_grad_(False)
    load_trainable_state(other, loaded.trainable, "ckpt")
    assert torch.equal(other.weight, model.weight)
    assert [p.name for p in prune_checkpoints(tmp_path, keep=1)] == ["step-00000002", "step-00000004"]
    with pytest.raises(CheckpointError, match="missing"):
        load_trainable_state(torch.nn.Linear(3, 2), loaded.trainable, "ckpt")  # bias trainable there
    (latest_checkpoint(tmp_path) / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match="optimizer.pt is missing"):
        load_checkpoint(latest_checkpoint(tmp_path))


def test_metrics_truncate_after_resume_point(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for step in range(1, 6):
            log.write({"step": step, "loss": float("nan") if step == 5 else 1.0 / step})
    with path.open("a") as handle:
        handle.write('{"step": 6, "loss"')  # a line cut off by a crash
    assert read_metrics(path)[4]["loss"] == "nan"  # still valid JSON
    assert truncate_after_step(path, 3) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
