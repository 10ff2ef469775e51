"""REACT training side: what each strategy changes, the CLI on the runtime (resume, crash, SIGTERM), bad input."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from react_explorer.customized.model_dir import load_base, load_model_dir
from tests.support.react_support import save_random_tiny_clip, write_toy_pool
from trainer.react import train as train_module
from trainer.react.__main__ import main
from trainer.react.config import react_preset
from trainer.react.data import PairDataset, collate_pairs, read_subset
from trainer.react.strategies import changed_parameters, part_of, train_mode_for
from trainer.react.train import make_compute_loss, prepare_model, tokenize_all
from trainer.runtime.checkpoint import latest_checkpoint, load_checkpoint
from trainer.runtime.metrics import read_metrics

logging.getLogger().setLevel(logging.ERROR)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("react")
    return save_random_tiny_clip(root), write_toy_pool(root / "pool", count=24)


def one_step(clip_dir: Path, pool: Path, strategy: str):
    """One AdamW update of ``strategy`` on 8 toy pairs; returns the model, the parameters before, the changes."""
    torch.manual_seed(0)
    bundle = prepare_model(load_base(str(clip_dir)), react_preset("tiny", strategy))
    pairs, _ = read_subset([pool])
    dataset = PairDataset(
        pairs[:8], tokenize_all(bundle.tokenizer, [p.caption for p in pairs[:8]]), bundle.preprocess
    )
    before = {name: param.detach().clone() for name, param in bundle.model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in bundle.model.parameters() if p.requires_grad], lr=1e-2)
    train_mode_for(strategy)(bundle.model)
    make_compute_loss(0.9)(bundle.model, collate_pairs([dataset[i] for i in range(8)])).loss.backward()
    optimizer.step()
    return bundle.model, before, changed_parameters(before, bundle.model)


def test_gated_image_step_changes_only_gates_and_logit_scale(setup):
    model, before, changed = one_step(*setup, "gated-image")
    assert changed and {part_of(name) for name in changed} <= {"gated", "logit"}
    assert "logit_scale" in changed
    gates = {name for name in before if name.endswith(("alpha_attn", "alpha_dense"))}
    assert gates and gates <= changed  # the gates get gradients at step 0; the blocks behind them do not yet
    frozen = [name for name in before if part_of(name) in ("image", "text")]
    assert all(torch.equal(before[name], dict(model.named_parameters())[name]) for name in frozen)
    assert not any(dict(model.named_parameters())[name].requires_grad for name in frozen)


@pytest.mark.parametrize(
    ("strategy", "trained"),
    [("locked-text", {"image"}), ("locked-image", {"text"}), ("full", {"image", "text"})],
)
def test_other_strategies_change_what_they_claim(setup, strategy, trained):
    model, before, changed = one_step(*setup, strategy)
    parts = {part_of(name) for name in changed}
    assert parts == trained | {"logit"}
    assert not any(part_of(name) == "gated" for name in before)  # no gated blocks outside gated-image


def run_cli(*args: str) -> int:
    return main(["train", *args, "--preset", "tiny", "--no-progress"])


def test_cli_run_exports_a_model_whose_frozen_towers_are_the_base(setup, tmp_path):
    clip_dir, pool = setup
    assert run_cli("--subset", str(pool), "--base", str(clip_dir), "--out", str(tmp_path / "run")) == 0
    run_config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert run_config["parameters"]["trainable"] == run_config["parameters"]["gated"] + 1
    metrics = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3] and all(m["loss"] > 0 for m in metrics)
    base = dict(load_model_dir(clip_dir).model.named_parameters())
    tuned = load_model_dir(tmp_path / "run" / "final")
    assert tuned.react is not None and tuned.react.last_k_layers == 1
    for name, param in tuned.model.named_parameters():
        if part_of(name) in ("image", "text"):
            assert torch.equal(param, base[name]), name
    assert any(not torch.equal(p, torch.zeros(())) for n, p in tuned.model.named_parameters() if "alpha" in n)


def test_preloaded_subset_trains_exactly_as_decoding_per_batch(setup, tmp_path):
    clip_dir, pool = setup
    common = ["--subset", str(pool), "--base", str(clip_dir)]
    assert run_cli(*common, "--out", str(tmp_path / "preloaded")) == 0
    assert run_cli(*common, "--out", str(tmp_path / "per-batch"), "--preload-max-mb", "0") == 0
    preloaded = json.loads((tmp_path / "preloaded" / "run_config.json").read_text())["preload"]
    per_batch = json.loads((tmp_path / "per-batch" / "run_config.json").read_text())["preload"]
    assert (preloaded["kind"], preloaded["images"]) == ("transformed", 24)
    assert (per_batch["kind"], per_batch["images"]) == ("skipped", 0)
    losses = [
        [m["loss"] for m in read_metrics(tmp_path / run / "metrics.jsonl")]
        for run in ("preloaded", "per-batch")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_resume_continues_with_the_same_data_order(setup, tmp_path):
    clip_dir, pool = setup
    common = ["--subset", str(pool), "--base", str(clip_dir), "--max-steps", "5"]
    assert run_cli(*common, "--out", str(tmp_path / "straight")) == 0
    assert run_cli(*common, "--out", str(tmp_path / "cut"), "--stop-after-steps", "2") == 0
    assert load_checkpoint(latest_checkpoint(tmp_path / "cut" / "checkpoints")).step == 2
    assert not (tmp_path / "cut" / "final").exists()
    assert run_cli(*common, "--out", str(tmp_path / "cut"), "--resume") == 0
    straight = [m["loss"] for m in read_metrics(tmp_path / "straight" / "metrics.jsonl")]
    resumed = [m["loss"] for m in read_metrics(tmp_path / "cut" / "metrics.jsonl")]
    assert len(straight) == len(resumed) == 5
    assert resumed == pytest.approx(straight, rel=1e-6, abs=1e-7)
    a = load_model_dir(tmp_path / "straight" / "final").model.state_dict()
    b = load_model_dir(tmp_path / "cut" / "final").model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_crash_mid_run_leaves_the_last_checkpoint_intact(setup, tmp_path, monkeypatch):
    clip_dir, pool = setup
    calls = {"n": 0}
    real = train_module.local_gamma_positive_loss

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "local_gamma_positive_loss", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cli(
            "--subset",
            str(pool),
            "--base",
            str(clip_dir),
            "--out",
            str(tmp_path / "run"),
            "--checkpoint-every",
            "1",
        )
    checkpoint = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert checkpoint.step == 2 and checkpoint.trainable
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_bad_input_exits_2_naming_the_problem(setup, tmp_path, capsys):
    clip_dir, pool = setup
    base = ["--base", str(clip_dir), "--out", str(tmp_path / "x")]
    no_caption = write_parquet(tmp_path / "nocap.parquet", [{"image_path": "a.png", "key": "0"}])
    cases = [
        (["--subset", str(no_caption), *base], "no 'caption' column"),
        (["--subset", str(pool), *base, "--last-k-layers", "3"], "last_k_layers = 3 is larger than the vision tower's depth 2"),
        (["--subset", str(pool), *base, "--strategy", "full", "--lock-text"], "--strategy full contradicts the lock flags"),
        (["--subset", str(pool), *base, "--lock-image", "--lock-image-unlock-gated", "--lock-text"], "--lock-image freezes"),
        (["--subset", str(pool), *base, "--strategy", "locked-text", "--last-k-layers", "1"], "last_k_layers = 1 adds gated blocks"),
        (["--subset", str(pool), *base, "--micro-batch-size", "64"], "micro_batch_size = 64 is larger than the subset"),
        (["--subset", str(tmp_path / "nothing.parquet"), *base], "not found"),
    ]  # fmt: skip
    for args, message in cases:
        assert run_cli(*args) == 2, args
        assert message in capsys.readouterr().err, message


def test_missing_images_are_an_error_or_skipped_and_counted(setup, tmp_path, capsys):
    clip_dir, pool = setup
    rows = pq.read_table(pool).to_pylist()
    rows[0]["image_path"] = "images/gone.png"
    rows[5]["image_path"] = "images/also_gone.png"
    subset = write_parquet(pool.parent / "with_missing.parquet", rows)
    args = ["--subset", str(subset), "--base", str(clip_dir), "--out", str(tmp_path / "run")]
    assert run_cli(*args) == 2
    assert "2 of 24 subset images are missing" in capsys.readouterr().err
    assert run_cli(*args, "--skip-missing-images") == 0
    report = json.loads((tmp_path / "run" / "run_config.json").read_text())["subset_report"]
    assert report["pairs"] == 22 and report["skipped_missing_images"] == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_checkpoints_and_exits_143(setup, tmp_path):
    clip_dir, pool = setup
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "trainer.react", "train", "--subset", str(pool), "--base", str(clip_dir),
               "--out", str(out), "--preset", "tiny", "--max-steps", "100000", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
        (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 2
    ):
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    steps = [m["step"] for m in read_metrics(out / "metrics.jsonl")]
    assert load_checkpoint(latest_checkpoint(out / "checkpoints")).step == steps[-1] >= 2
