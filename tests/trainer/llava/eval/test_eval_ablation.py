"""``--ablation-model``: a second model on the same small-detail questions, its accuracy and the paired gain;
plus the CLI's report keys for intervals and image use."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from trainer import eval as eval_cli
from trainer.llava.eval.ablation import ablation_config, ablation_report
from trainer.llava.eval.data import load_eval_sets, open_eval_image
from trainer.llava.eval.run import EvalConfig
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "tiny"
    generate_world(out, WorldConfig.preset("tiny"), seed=0)
    return out


def _prediction(question_id: int, correct: bool, set_name: str = "detail") -> dict:
    return {"set": set_name, "question_id": question_id, "correct": correct}


def test_ablation_report_pairs_the_questions() -> None:
    main = [_prediction(i, flag) for i, flag in enumerate([True, True, False, True])] + [
        _prediction(9, False, "vqa")
    ]
    ablation = [_prediction(i, flag) for i, flag in enumerate([True, False, False, False])]
    report = ablation_report(main, ablation, model="base-tile", model_path="/m")
    assert report["n"] == 4 and report["correct"] == 1
    assert report["small_detail_accuracy"] == 0.25 and report["small_detail_gain"] == 0.5
    assert report["ci95"] == pytest.approx([0.04559, 0.69936], abs=1e-5)  # Wilson at 1/4
    low, high = report["small_detail_gain_ci95"]
    # Paired: no question favours the ablation, so no resample can make the gain negative.
    assert 0.0 <= low < 0.5 < high <= 1.0
    with pytest.raises(ValueError, match="different 'detail' questions"):
        ablation_report(main, ablation[:3], model="x", model_path="/m")
    with pytest.raises(ValueError, match="no 'detail' predictions"):
        ablation_report(main, [_prediction(0, True, "vqa")], model="x", model_path="/m")


def test_ablation_config_keeps_the_questions_and_needs_the_detail_set() -> None:
    config = EvalConfig.quick(limit=120)
    cut = ablation_config(config)
    assert cut.sets == ("detail",) and cut.limit == 120 and cut.split == config.split
    assert cut.description_images == 0 and cut.image_use_records == 0
    with pytest.raises(ValueError, match="'detail' set, which --sets leaves out"):
        ablation_config(EvalConfig.quick(sets=("vqa",)))


class Oracle:
    """Answers every question right, except the small-detail ones when ``blind_to_detail``."""

    def __init__(self, world: Path, blind_to_detail: bool) -> None:
        self.truth = {}
        for items in load_eval_sets(world).values():
            for item in items:
                pixels = hashlib.sha256(open_eval_image(world, item.image, item.where).tobytes()).hexdigest()
                self.truth[(pixels, item.text)] = item
        self.blind_to_detail = blind_to_detail

    def answer(self, image: Image.Image, prompt: str, max_new_tokens: int) -> str:
        item = self.truth.get((hashlib.sha256(image.tobytes()).hexdigest(), prompt))
        if item is None:
            return "a scene with shapes"  # a description probe
        if item.set_name == "detail" and self.blind_to_detail:
            return "unreadable"
        return item.answer


def test_cli_reports_the_ablation_intervals_and_why_image_use_is_missing(
    tiny_world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(eval_cli, "resolve_checkpoint", lambda model: (model or "main", f"/models/{model}"))
    monkeypatch.setattr(eval_cli, "make_answerer", lambda model: Oracle(tiny_world, model == "base-tile"))
    argv = ["llava", "--world", str(tiny_world), "--limit", "6", "--descriptions", "0", "--no-progress"]
    assert eval_cli.main([*argv, "--model", "anyres", "--ablation-model", "base-tile", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["small_detail_accuracy"] == 1.0
    ablation = report["ablation"]
    n = report["counts"]["detail"]
    assert ablation["model"] == "base-tile" and ablation["n"] == n
    assert ablation["small_detail_accuracy"] == 0.0 and ablation["small_detail_gain"] == 1.0
    assert ablation["small_detail_gain_ci95"] == [1.0, 1.0] and ablation["seconds"] >= 0
    assert report["cpu_seconds"] > 0 and report["seconds"] >= report["eval_seconds"]
    # Headline intervals, per-category Wilson intervals, POPE's bootstrap F1 and yes-ratio intervals.
    assert set(report["ci95"]) == {
        "short_answer_accuracy",
        "yes_no_f1",
        "multiple_choice_accuracy",
        "small_detail_accuracy",
    }
    low, high = report["ci95"]["short_answer_accuracy"]
    assert low < 1.0 == high and report["sets"]["vqa"]["ci95"] == [low, high]
    assert all("ci95" in s for s in report["sets"]["vqa"]["by_category"].values())
    pope = report["sets"]["pope"]
    assert pope["f1_ci95"] == [1.0, 1.0] and "yes_ratio_ci95" in pope["pooled"]
    assert all("f1_ci95" in s for s in pope["by_category"].values())
    # An oracle is no in-process model: image_use is null and the report says why.
    assert report["image_use"] is None and "in-process model" in report["image_use_skipped"]

    assert eval_cli.main([*argv, "--model", "anyres", "--ablation-model", "base-tile"]) == 0
    table = capsys.readouterr().out
    assert "ablation small_detail" in table and "gain +1.000 [1.000, 1.000]" in table
    assert "short_answer_accuracy        1.000 [" in table

    assert eval_cli.main([*argv, "--sets", "vqa", "--ablation-model", "base-tile"]) == 2
    assert "'detail' set, which --sets leaves out" in capsys.readouterr().err
