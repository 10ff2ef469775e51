"""The eval's ``image_use`` object: held-out eval questions as records, donor choice, pooling, and a tiny
LLaVA-NeXT whose gaps vanish when its projector is blinded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llava_demo.backends import make_backend
from tests.support.tiny_llava import build_tiny_llava
from trainer.llava.data import validate_all
from trainer.llava.eval.answer_loss import ImageUseReport, donor_index
from trainer.llava.eval.batch import BatchedLocalAnswerer
from trainer.llava.eval.data import EvalItem
from trainer.llava.eval.image_use import (
    LossModel,
    eval_records,
    pooled,
    spread_over_images,
    training_template,
)
from trainer.llava.eval.run import EvalConfig, run_eval
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.world import generate_world


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "tiny"
    generate_world(out, WorldConfig.preset("tiny"), seed=0)
    return out


def test_the_other_image_comes_from_another_scene() -> None:
    a, b, c = (Path("a.png"),), (Path("b.png"),), (Path("c.png"),)
    assert [donor_index([a, a, b, c], i) for i in range(4)] == [2, 2, 3, 0]
    assert [donor_index([a, b, b], i) for i in range(3)] == [1, 0, 0]
    with pytest.raises(ValueError, match="at least two different images"):
        donor_index([a, a], 0)


def test_records_spread_over_as_many_scenes_as_possible() -> None:
    items = [EvalItem("vqa", i, f"{image}.png", "q", "a", "color") for i, image in enumerate("aaabbc")]
    assert [item.question_id for item in spread_over_images(items, 3)] == [0, 3, 5]  # one per scene
    assert [item.question_id for item in spread_over_images(items, 4)] == [0, 1, 3, 5]  # then a second
    assert len(spread_over_images(items, 10)) == 6


def test_pooling_weights_by_answer_tokens() -> None:
    one = ImageUseReport(records=2, supervised_tokens=10, loss_right=1.0, loss_blank=2.0, loss_other=1.5)
    two = ImageUseReport(records=3, supervised_tokens=30, loss_right=2.0, loss_blank=2.0, loss_other=3.0)
    both = pooled([one, two])
    assert (both.records, both.supervised_tokens) == (5, 40)
    assert both.loss_right == pytest.approx(1.75) and both.loss_other == pytest.approx(2.625)
    assert both.gap_blank == pytest.approx(0.25) and both.gap_other == pytest.approx(0.875)
    with pytest.raises(ValueError, match="no supervised tokens"):
        pooled([])


def test_eval_items_become_valid_single_turn_records() -> None:
    item = EvalItem("vqa", 7, "scenes/images/test/x.png", "What color?\nAnswer briefly.", "red", "color")
    records = validate_all(eval_records([item]), "eval vqa")
    assert records == [
        {
            "id": "vqa_7",
            "image": "scenes/images/test/x.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat color?\nAnswer briefly."},
                {"from": "gpt", "value": "red"},
            ],
        }
    ]


def test_training_template_is_read_from_the_export(tmp_path: Path) -> None:
    assert training_template(tmp_path, "llava_plain") == "llava_plain"
    assert training_template(tmp_path, None) is None
    (tmp_path / "llava_trainer.json").write_text(json.dumps({"template": "vicuna_v1"}))
    assert training_template(tmp_path, "llava_plain") == "vicuna_v1"


@pytest.mark.slow
def test_run_eval_reports_image_use_gaps_that_vanish_for_a_blind_model(
    tiny_world: Path, tmp_path: Path
) -> None:
    config = EvalConfig.tiny(sets=("vqa", "pope", "mc"), limit=1, description_images=0, image_use_records=3)
    reports = {}
    for name in ("seeing", "blind"):
        model_dir = build_tiny_llava(tmp_path / name)
        if name == "blind":  # every image token becomes the same vector, whatever the pixels
            with make_backend("local", str(model_dir), device="cpu") as backend:
                with torch.no_grad():
                    backend.model.model.multi_modal_projector.linear_2.weight.zero_()
                backend.model.save_pretrained(model_dir)
        with make_backend("local", str(model_dir), device="cpu") as backend:
            answerer = BatchedLocalAnswerer(backend)
            loss_model = LossModel(answerer.model, answerer.processor, "vicuna_v1")
            reports[name] = run_eval(
                answerer, tiny_world, config, progress=False, loss_model=loss_model
            ).report
    seeing, blind = reports["seeing"]["image_use"], reports["blind"]["image_use"]
    assert seeing["records"] == 6 and set(seeing["by_set"]) == {"vqa", "pope"}  # mc supervises no reply
    assert seeing["held_out"] is True and seeing["template"] == "vicuna_v1"
    assert abs(seeing["gap_blank"]) > 1e-4 and abs(seeing["gap_other"]) > 1e-4
    assert seeing["gap_other"] == pytest.approx(seeing["loss_other"] - seeing["loss_right"])
    assert blind["gap_blank"] == pytest.approx(0.0, abs=1e-6) and blind["gap_other"] == pytest.approx(
        0.0, abs=1e-6
    )
    assert blind["supervised_tokens"] == seeing["supervised_tokens"] > 6
    assert (
        "image_use" in reports["seeing"]["seconds_by_set"]
        and "image_use" in reports["seeing"]["cpu_seconds_by_set"]
    )

    # Without a loss model the object is null, not made up.
    class Red:
        def answer(self, image: object, prompt: str, max_new_tokens: int) -> str:
            return "red"

    report = run_eval(Red(), tiny_world, EvalConfig.tiny(sets=("vqa",), description_images=0), progress=False)
    assert report.report["image_use"] is None
