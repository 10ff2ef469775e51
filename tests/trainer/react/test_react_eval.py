"""``python -m trainer.react eval``: ImageFolder and SynthWorld task folders, JSON report, before/after table."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from react_explorer.customized.model_dir import load_model_dir
from tests.support.react_support import save_random_tiny_clip, toy_image
from trainer.react.__main__ import main
from trainer.react.zeroshot_eval import evaluate_bundle, read_any_task

logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    clip = save_random_tiny_clip(root)
    folder = root / "imagefolder"
    for label, name in enumerate(("red", "green", "blue")):
        (folder / name).mkdir(parents=True)
        for i in range(3):
            toy_image(label + 4 * i).save(folder / name / f"{i}.png")
    task = root / "world" / "tasks" / "toy"
    (task / "images").mkdir(parents=True)
    (task / "classes.txt").write_text("red\ngreen\nblue\n")
    lines = []
    for i in range(6):
        toy_image(i % 3 + 4 * i).save(task / "images" / f"{i}.png")
        lines.append(
            json.dumps({"image": f"images/{i}.png", "label": i % 3, "class": ["red", "green", "blue"][i % 3]})
        )
    (task / "test.jsonl").write_text("\n".join(lines) + "\n")
    return clip, folder, task


def test_imagefolder_and_task_folders_are_read(setup):
    _, folder, task = setup
    image_task, synthworld = read_any_task(folder)
    assert (
        not synthworld and image_task.classnames == ("blue", "green", "red") and len(image_task.labels) == 9
    )
    toy, synthworld = read_any_task(task)
    assert synthworld and toy.labels == (0, 1, 2, 0, 1, 2)


def test_eval_cli_writes_a_json_report_and_a_before_after_table(setup, tmp_path, capsys):
    clip, folder, task = setup
    out = tmp_path / "report.json"
    args = ["eval", "--model", str(clip), "--task", str(folder), "--task", str(task), "--templates", "simple"]
    assert main([*args, "--out", str(out), "--json"]) == 0
    report = json.loads(out.read_text())
    assert set(report["tasks"]) == {"imagefolder", "toy"}
    for score in report["tasks"].values():
        assert 0 <= score["top1"] <= 1 and score["num_classes"] == 3 and score["templates"] == "simple"
    assert json.loads(capsys.readouterr().out) == report
    direct = evaluate_bundle(load_model_dir(clip), [folder], templates="simple")["imagefolder"]
    assert np.isclose(direct.top1, report["tasks"]["imagefolder"]["top1"])
    assert main([*args, "--baseline", str(clip)]) == 0
    table = capsys.readouterr().out
    assert "| imagefolder |" in table and "+0.0" in table


def test_eval_bad_task_exits_2(setup, tmp_path, capsys):
    clip, _, _ = setup
    (tmp_path / "one").mkdir()
    assert main(["eval", "--model", str(clip), "--task", str(tmp_path / "one")]) == 2
    assert "needs at least 2 class folders" in capsys.readouterr().err
