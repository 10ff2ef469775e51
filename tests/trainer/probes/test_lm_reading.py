"""The scene-reading probe: scene text by hand, and the scoring on fake LMs whose reading is known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.foundation.tokenizer import train_tokenizer
from trainer.llava.eval.data import EvalDataError, EvalItem
from trainer.probes.lm_reading import (
    answer_correct,
    build_prompt,
    main,
    run_reading_probe,
    scene_views,
)
from trainer.synthworld.scene_text import scene_description
from trainer.synthworld.scene_view import SceneObject, SceneView

FORMAT = "\nAnswer the question using a single word or phrase."
VIEW = SceneView(
    width=100,
    height=90,
    objects=(
        SceneObject("pentagon", (70, 70, 10, 10), color="gray", pattern="striped", size="large"),
        SceneObject("sign", (40, 40, 20, 10), size="large", text="2Y8"),
        SceneObject("star", (10, 10, 10, 10), color="yellow", pattern="plain", size="medium"),
    ),
)
IMAGE = "scenes/images/test/a.png"


def _item(qid: int, question: str, answer: str, category: str) -> EvalItem:
    return EvalItem("vqa", qid, IMAGE, question + FORMAT, answer, category)


ITEMS = [
    _item(0, "What color is the star?", "yellow", "color"),
    _item(1, "What color is the pentagon?", "gray", "color"),
    _item(2, "How many stars are there in the image?", "4", "count"),
]


@pytest.fixture(scope="module")
def tok():
    corpus = [scene_description(VIEW)] + [item.text + " " + item.answer for item in ITEMS] * 3
    return train_tokenizer(corpus, vocab_size=300)


def test_scene_description_reading_order_attributes_and_cells() -> None:
    # Centres (15, 15), (50, 45), (75, 75) on 100x90: top left, center, bottom right; "plain" is not said.
    assert scene_description(VIEW) == (
        'Scene: medium yellow star at top left; large sign "2Y8" at center; large gray striped pentagon at bottom right.'
    )
    assert scene_description(SceneView(10, 10, ())) == "Scene: nothing."


def test_prompt_ends_with_the_answer_tokens(tok) -> None:
    prompt = build_prompt(tok, ITEMS[0], scene_description(VIEW))
    assert tok.decode(prompt.ids[prompt.answer_start :]) == " yellow"
    assert tok.decode(prompt.ids[: prompt.answer_start]).endswith("phrase. ASSISTANT:")
    assert "Scene: medium yellow star" in tok.decode(prompt.ids)
    assert "Scene" not in tok.decode(build_prompt(tok, ITEMS[0], None).ids)


def _copier(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A perfect reader that knows nothing else: predicts the next token only when it already occurred
    earlier in the sequence (it can copy from context), else token 0."""
    batch, width = ids.shape
    logits = torch.zeros(batch, width, 400)
    for row in range(batch):
        for t in range(width - 1):
            nxt = int(ids[row, t + 1])
            logits[row, t, nxt if nxt in ids[row, : t + 1].tolist() else 0] = 1.0
    return logits


def test_a_context_copier_reads_colours_only_with_the_scene(tok) -> None:
    report = run_reading_probe(_copier, tok, ITEMS, {IMAGE: VIEW})
    assert report["with_scene"]["by_category"] == {"color": 1.0, "count": 0.0}
    assert report["without_scene"]["by_category"] == {"color": 0.0, "count": 0.0}
    assert report["gain"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["questions"] == 3


def test_answer_correct_needs_every_answer_token(tok) -> None:
    prompts = [build_prompt(tok, item, scene_description(VIEW)) for item in ITEMS]

    def future(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # sees the next token: always right
        nxt = torch.cat([ids[:, 1:], ids[:, -1:]], dim=1)
        return torch.nn.functional.one_hot(nxt, 400).float()

    def off_by_one_at_the_end(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = future(ids, mask)
        for row, prompt in enumerate(prompts):
            last = len(prompt.ids) - 2  # predicts the final answer token
            logits[row, last] = torch.roll(logits[row, last], 1)
        return logits

    assert answer_correct(future, prompts, pad_id=0, batch_size=2) == [True, True, True]
    assert answer_correct(off_by_one_at_the_end, prompts, pad_id=0) == [False, False, False]


def test_missing_annotations_are_named(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="instances_test.json: not found"):
        scene_views(tmp_path)
    with pytest.raises(EvalDataError, match="no scene annotations for 1"):
        run_reading_probe(_copier, None, ITEMS[:1], {})


def test_scene_views_key_by_eval_image_path(tmp_path: Path) -> None:
    ann = tmp_path / "scenes" / "annotations"
    ann.mkdir(parents=True)
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "width": 100, "height": 90}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 4,
                "bbox": [10, 10, 10, 10],
                "attributes": {"color": "red"},
            }
        ],
        "categories": [{"id": 4, "name": "star"}],
    }
    (ann / "instances_test.json").write_text(json.dumps(coco))
    views = scene_views(tmp_path)
    assert scene_description(views[IMAGE]) == "Scene: red star at top left."


def test_cli_names_a_bad_world(tmp_path: Path, capsys) -> None:
    assert main(["--lm", str(tmp_path), "--world", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "error:" in capsys.readouterr().err
