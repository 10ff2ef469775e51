"""The training loop on a toy regression: frozen parts, resume == uninterrupted, SIGTERM, refusals."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from trainer.runtime.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, state_digest
from trainer.runtime.config import RuntimeConfig
from trainer.runtime.loop import StepLoss, TrainJob, run_training, seed_everything
from trainer.runtime.metrics import read_metrics
from trainer.runtime.schedule import ParamGroup

torch.set_num_threads(1)


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n: int = 24) -> None:
        generator = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index], self.y[index]


def collate(items):
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def toy_job(on_loss=None) -> TrainJob:
    seed_everything(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    model[0].requires_grad_(False)  # a frozen "tower"
    data = ToyData()

    def plan_epoch(epoch: int):
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch)).tolist()
        return [order[i : i + 3] for i in range(0, len(order), 3)]  # 8 micro-batches per epoch

    def compute_loss(net, batch):
        x, y = batch
        if on_loss is not None:
            on_loss()
        loss = torch.nn.functional.mse_loss(net(x).squeeze(-1), y)
        return StepLoss(loss, samples=len(x), tokens=len(x))

    return TrainJob(
        model=model,
        dataset=data,
        collate=collate,
        plan_epoch=plan_epoch,
        compute_loss=compute_loss,
        param_groups=lambda net: [ParamGroup("head", tuple(net[1].parameters()))],
    )


CFG = RuntimeConfig(learning_rate=0.05, warmup_ratio=0.1, max_steps=7, grad_accum=2, checkpoint_every=3)


def test_uninterrupted_run_trains_only_trainable_parameters(tmp_path):
    job = toy_job()
    frozen = job.model[0].weight.detach().clone()
    head = job.model[1].weight.detach().clone()
    result = run_training(job, CFG, tmp_path, progress=False)
    assert result.finished and result.step == 7 and result.total_steps == 7
    assert torch.equal(job.model[0].weight, frozen)
    assert not torch.equal(job.model[1].weight, head)
    metrics = read_metrics(tmp_path / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, 8))
    # 8 micro-batches / accum 2 = 4 updates per epoch: updates 5..7 are in epoch 1.
    assert [m["epoch"] for m in metrics] == [0, 0, 0, 0, 1, 1, 1]
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    assert metrics[0]["lr"] == pytest.approx(0.05)  # warmup ceil(0.7) = 1 update
    assert all(m["samples_per_s"] > 0 and m["elapsed_s"] > 0 for m in metrics)
    # checkpoints at 3, 6 and the end (7); keep_checkpoints=2 pruned step 3
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert ckpt.step == 7 and set(ckpt.trainable) == {"1.weight", "1.bias"}
    assert ckpt.state["samples"] == 7 * 2 * 3 and ckpt.state["position"] == {"epoch": 1, "step_in_epoch": 3}
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000006", "step-00000007"]


def test_resume_matches_uninterrupted_run_bit_for_bit(tmp_path):
    full = toy_job()
    run_training(full, CFG, tmp_path / "full", progress=False)

    first = toy_job()
    stopped = run_training(first, CFG, tmp_path / "split", stop_after_step=5, progress=False)
    assert not stopped.finished and stopped.stop_reason == "stop_after_step" and stopped.step == 5
    resumed_job = toy_job()  # a fresh process would rebuild the model from scratch
    resumed = run_training(resumed_job, CFG, tmp_path / "split", resume=True, progress=False)
    assert resumed.finished and resumed.step == 7
    assert torch.equal(resumed_job.model[1].weight, full.model[1].weight)
    assert torch.equal(resumed_job.model[1].bias, full.model[1].bias)
    full_metrics = read_metrics(tmp_path / "full" / "metrics.jsonl")
    split_metrics = read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert [m["step"] for m in split_metrics] == list(range(1, 8))
    assert [m["loss"] for m in split_metrics] == [m["loss"] for m in full_metrics]


def test_sigterm_checkpoints_after_the_current_update(tmp_path):
    calls = {"n": 0}

    def send_sigterm_once():
        calls["n"] += 1
        if calls["n"] == 3:  # second update, first micro-batch
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    job = toy_job(on_loss=send_sigterm_once)
    result = run_training(job, CFG, tmp_path, progress=False)
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
    assert result.stop_reason == "signal" and result.step == 2 and not result.finished
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert ckpt.step == 2
    assert ckpt.state["replica_digests"] == [state_digest(ckpt.trainable)]


def test_refuses_to_mix_runs_and_to_resume_with_other_settings(tmp_path):
    run_training(toy_job(), CFG, tmp_path, stop_after_step=3, progress=False)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        run_training(toy_job(), CFG, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="grad_accum was 2 and is now 1"):
        run_training(toy_job(), RuntimeConfig(**{**CFG.to_dict(), "grad_accum": 1}), tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run_training(toy_job(), CFG, tmp_path / "empty", resume=True, progress=False)
