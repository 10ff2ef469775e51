"""``python -m trainer.react eval``: ImageFolder and SynthWorld task folders, JSON report, before/after table,
scoring only some classes, and ``train --eval-task`` writing the before/after report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from react_explorer.customized.model_dir import load_model_dir
from tests.support.react_support import save_random_tiny_clip, toy_image, write_toy_pool
from trainer.foundation.zeroshot import TaskDataError
from trainer.react.__main__ import main
from trainer.react.zeroshot_eval import evaluate_bundle, parse_class_list, read_any_task, restrict_task

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


def test_restrict_task_keeps_the_named_classes_relabelled_in_their_order(setup):
    _, _, task = setup
    toy, _ = read_any_task(task)  # labels (0, 1, 2, 0, 1, 2) over red, green, blue
    both = restrict_task(toy, ["blue", "red", "blue"])
    assert both.classnames == ("blue", "red")
    assert [p.name for p in both.image_paths] == ["0.png", "2.png", "3.png", "5.png"]
    assert both.labels == (1, 0, 1, 0)  # red was 0 -> 1, blue was 2 -> 0
    with pytest.raises(TaskDataError, match="has no class 'purple'"):
        restrict_task(toy, ["red", "purple"])
    with pytest.raises(TaskDataError, match="at least 2 classes"):
        restrict_task(toy, ["red"])
    assert parse_class_list(" red, blue ,,red") == ("red", "blue") and parse_class_list("") == ()


def test_eval_cli_scores_only_the_given_classes(setup, tmp_path):
    clip, _, task = setup
    out = tmp_path / "report.json"
    args = [
        "eval",
        "--model",
        str(clip),
        "--baseline",
        str(clip),
        "--task",
        str(task),
        "--classes",
        "green,red",
    ]
    assert main([*args, "--templates", "simple", "--out", str(out), "--json"]) == 0
    report = json.loads(out.read_text())
    assert report["classes"] == ["green", "red"]
    assert report["before"]["toy"]["num_classes"] == 2 and report["before"]["toy"]["num_images"] == 4
    assert report["before"] == report["after"]  # the same model on both sides
    direct = evaluate_bundle(load_model_dir(clip), [task], templates="simple", classes=("green", "red"))[
        "toy"
    ]
    assert np.isclose(direct.top1, report["after"]["toy"]["top1"])


def test_train_with_an_eval_task_writes_the_before_after_report(setup, tmp_path, capsys):
    clip, _, task = setup
    pool = write_toy_pool(tmp_path / "pool", count=12)
    run = tmp_path / "run"
    common = ["train", "--subset", str(pool), "--base", str(clip), "--preset", "tiny", "--no-progress"]
    assert main([*common, "--out", str(run), "--eval-task", str(task), "--eval-classes", "red,blue"]) == 0
    report = json.loads((run / "zeroshot.json").read_text())
    assert report["model"] == str(run / "final") and report["baseline"] == str(clip)
    assert report["classes"] == ["red", "blue"] and set(report["before"]) == set(report["after"]) == {"toy"}
    base = evaluate_bundle(load_model_dir(clip), [task], classes=("red", "blue"))["toy"]
    tuned = evaluate_bundle(load_model_dir(run / "final"), [task], classes=("red", "blue"))["toy"]
    assert np.isclose(report["before"]["toy"]["top1"], base.top1)
    assert np.isclose(report["after"]["toy"]["top1"], tuned.top1)
    assert "| toy |" in capsys.readouterr().err  # the table is in the job's log
    # A class the task lacks is refused before any training step.
    bad = tmp_path / "bad"
    assert main([*common, "--out", str(bad), "--eval-task", str(task), "--eval-classes", "red,purple"]) == 2
    assert "has no class 'purple'" in capsys.readouterr().err and not (bad / "metrics.jsonl").exists()
