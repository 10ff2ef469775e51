"""The training CLI end to end: stage 1 -> stage 2, resume == uninterrupted, SIGTERM, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.support.llava_fixtures import stage1_records, stage2_records, write_json
from tests.support.paths import REPO_ROOT
from trainer.llava.train import EXIT_BAD_INPUT, EXIT_STOPPED_BY_SIGNAL, main
from trainer.runtime.checkpoint import latest_checkpoint, load_checkpoint
from trainer.runtime.metrics import read_metrics

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_llava_parts):
    root = tmp_path_factory.mktemp("llava_train")
    return {
        "root": root,
        "parts": tiny_llava_parts,
        "s1": write_json(root / "stage1.json", stage1_records()),
        "s2": write_json(root / "stage2.json", stage2_records()),
    }


def stage1_args(world, out, *extra):
    p = world["parts"]
    return [
        "--config", "tiny", "--stage", "1", "--data", str(world["s1"]), "--images", str(p.images),
        "--out", str(out), "--vision-tower", str(p.vision), "--language-model", str(p.lm),
        "--tokenizer", str(p.tokenizer), "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.slow  # two training runs, > 15 s on a loaded CPU
def test_stage1_then_stage2_from_the_stage1_export(world):
    run1, run2 = world["root"] / "run1", world["root"] / "run2"
    assert main(stage1_args(world, run1)) == 0
    assert (run1 / "final" / "model.safetensors").is_file() and (run1 / "run_config.json").is_file()
    args2 = [
        "--config",
        "tiny",
        "--stage",
        "2",
        "--data",
        str(world["s2"]),
        "--images",
        str(world["parts"].images),
    ]
    assert main([*args2, "--out", str(run2), "--init", str(run1 / "final"), "--no-progress"]) == 0
    metrics = read_metrics(run2 / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert all(m["loss"] > 0 and m["tokens_per_s"] > m["samples_per_s"] > 0 for m in metrics)
    one, two = (
        load_file(str(run1 / "final" / "model.safetensors")),
        load_file(str(run2 / "final" / "model.safetensors")),
    )
    # stage 2 started from stage 1: the tower is unchanged, the LM moved (files use llava-hf's saved names)
    tower = [k for k in one if k.startswith("vision_tower.")]
    assert len(tower) > 10 and all(torch.equal(one[k], two[k]) for k in tower)
    assert not torch.equal(one["language_model.model.norm.weight"], two["language_model.model.norm.weight"])


@pytest.mark.slow  # three training runs, > 15 s on a loaded CPU
def test_resume_continues_with_the_same_data_order(world):
    full, split = world["root"] / "full", world["root"] / "split"
    assert main(stage1_args(world, full)) == 0
    assert main(stage1_args(world, split, "--stop-after-steps", "3")) == 0
    assert not (split / "final").exists()
    assert load_checkpoint(latest_checkpoint(split / "checkpoints")).step == 3
    assert main(stage1_args(world, split, "--resume")) == 0
    a, b = (
        load_file(str(full / "final" / "model.safetensors")),
        load_file(str(split / "final" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["loss"] for m in read_metrics(split / "metrics.jsonl")] == [
        m["loss"] for m in read_metrics(full / "metrics.jsonl")
    ]


@pytest.mark.slow
def test_sigterm_mid_run_leaves_a_loadable_checkpoint(world):
    out = world["root"] / "sigterm"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "trainer.llava.train", *stage1_args(world, out, "--max-steps", "100000")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            metrics = out / "metrics.jsonl"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
                break
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == EXIT_STOPPED_BY_SIGNAL, stderr[-2000:]
    assert "stopped (signal)" in stderr
    checkpoint = load_checkpoint(latest_checkpoint(out / "checkpoints"))
    last_logged = read_metrics(out / "metrics.jsonl")[-1]["step"]
    assert checkpoint.step == last_logged >= 5  # the update in flight finished and was checkpointed
    assert set(checkpoint.trainable) == {
        "model.image_newline",
        "model.multi_modal_projector.linear_1.weight",
        "model.multi_modal_projector.linear_1.bias",
        "model.multi_modal_projector.linear_2.weight",
        "model.multi_modal_projector.linear_2.bias",
    }
    assert not list((out / "checkpoints").glob(".*"))  # no half-written checkpoint left behind


def test_bad_input_exits_2_naming_the_problem(world, capsys):
    bad = write_json(
        world["root"] / "bad.json",
        [{"id": "lost", "image": "nowhere.png", "conversations": [
            {"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}],
    )  # fmt: skip
    args = stage1_args(world, world["root"] / "bad")
    args[args.index("--data") + 1] = str(bad)
    assert main(args) == EXIT_BAD_INPUT
    assert "record 'lost': field 'image': file" in capsys.readouterr().err
    assert main([*stage1_args(world, world["root"] / "bad2"), "--init", "x"]) == EXIT_BAD_INPUT
    assert "--init loads a whole model" in capsys.readouterr().err
    assert main([*stage1_args(world, world["root"] / "bad3"), "--max-steps", "0"]) == EXIT_BAD_INPUT
    assert "max_steps must be positive" in capsys.readouterr().err
