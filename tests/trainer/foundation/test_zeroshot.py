"""Zero-shot evaluation: hand-computed accuracies on a fake model, task-file validation, the CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer
from trainer.foundation.zeroshot import (
    SYNTHWORLD_TEMPLATES,
    TaskDataError,
    evaluate_task,
    main,
    read_task,
    results_table,
    topk_accuracy,
)
from vision_common.tiny_clip import TinyClipConfig, create_tiny_clip, save_open_clip_dir

logging.getLogger().setLevel(logging.ERROR)
CLASSES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
# Image "kind" (its red value / 10) -> feature; the fake text tower embeds class c as the unit vector e_c, so the
# logits of an image are proportional to its feature and the class ranking is readable off these rows.
FEATURES = {
    0: [6.0, 5, 4, 3, 2, 1],  # ranks classes 0 > 1 > 2 > 3 > 4 > 5
    1: [1.0, 6, 5, 4, 3, 2],  # ranks 1 > 2 > 3 > 4 > 5 > 0
    2: [2.0, 1, 3, 6, 5, 4],  # ranks 3 > 4 > 5 > 2 > 0 > 1
}


class FakeTokenizer:
    """Maps each prompt to the index of the class name it contains (one id per prompt)."""

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([[next(i for i, c in enumerate(CLASSES) if c in text)] for text in texts])


class FakeClip:
    def eval(self) -> FakeClip:
        return self

    def encode_text(self, ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return torch.nn.functional.one_hot(ids[:, 0], len(CLASSES)).float()

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        rows = torch.tensor([FEATURES[int(kind)] for kind in pixels[:, 0]])
        return torch.nn.functional.normalize(rows, dim=-1) if normalize else rows


def fake_preprocess(image: Image.Image) -> torch.Tensor:
    return torch.tensor([image.getpixel((0, 0))[0] // 10])


def write_task(root: Path, records: list[tuple[int, int]], classes: tuple[str, ...] = CLASSES) -> Path:
    """records: (image kind, label) pairs; images are 4x4 solid colours whose red value encodes the kind."""
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    lines = []
    for i, (kind, label) in enumerate(records):
        Image.new("RGB", (4, 4), (10 * kind, 0, 0)).save(root / "images" / f"{i}.png")
        lines.append(json.dumps({"image": f"images/{i}.png", "label": label, "class": classes[label]}))
    (root / "test.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_topk_accuracy_by_hand() -> None:
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    labels = torch.tensor([0, 2, 2, 1])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(2 / 4)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(3 / 4)
    assert topk_accuracy(logits, labels, 5) == 1.0  # k is capped at the number of classes
    with pytest.raises(ValueError, match="labels"):
        topk_accuracy(logits, labels[:2], 1)


def test_evaluate_task_hand_computed(tmp_path: Path) -> None:
    # kind 0 predicts alpha, kind 1 beta, kind 2 delta. Labels and the rank each gets:
    #   (0, alpha) rank 1 | (1, beta) rank 1 | (2, gamma) rank 4 | (2, beta) rank 6 | (0, zeta) rank 6
    task = read_task(write_task(tmp_path / "toy", [(0, 0), (1, 1), (2, 2), (2, 1), (0, 5)]))
    result = evaluate_task(
        FakeClip(), fake_preprocess, FakeTokenizer(), task, templates=["{}", "a {} icon"], batch_size=2
    )
    assert (result.num_classes, result.num_images) == (6, 5)
    assert result.top1 == pytest.approx(2 / 5)
    assert result.top5 == pytest.approx(3 / 5)
    assert result.chance == pytest.approx(1 / 6)
    table = results_table([result])
    assert "| toy | 6 | 5 | 40.0 | 60.0 | 16.7 |" in table


def test_task_files_are_validated(tmp_path: Path) -> None:
    root = write_task(tmp_path / "bad", [(0, 0), (1, 1)])
    lines = (root / "test.jsonl").read_text().splitlines()
    (root / "test.jsonl").write_text(
        lines[0] + "\n" + json.dumps({"image": "images/1.png", "label": 1, "class": "gamma"})
    )
    with pytest.raises(TaskDataError, match=r"test.jsonl:2: 'class' 'gamma' disagrees"):
        read_task(root)
    (root / "test.jsonl").write_text(json.dumps({"image": "images/0.png", "label": 6}))
    with pytest.raises(TaskDataError, match=r"test.jsonl:1: 'label' must be an int in \[0, 6\)"):
        read_task(root)
    (root / "test.jsonl").write_text(json.dumps({"image": "images/missing.png", "label": 0}))
    with pytest.raises(ValueError, match="missing.png not found"):
        evaluate_task(FakeClip(), fake_preprocess, FakeTokenizer(), read_task(root), templates=["{}"])
    (root / "classes.txt").unlink()
    with pytest.raises(TaskDataError, match="classes.txt not found"):
        read_task(root)


def test_templates_cover_every_task_and_read_like_the_pool() -> None:
    assert set(SYNTHWORLD_TEMPLATES) == {"shapes", "colors", "species"}
    assert [t("vorn") for t in SYNTHWORLD_TEMPLATES["species"]] == [
        "vorn",
        "vorn icon",
        "vorn drawing",
        "vorn photo",
    ]
    colour_prompts = [t("red") for t in SYNTHWORLD_TEMPLATES["colors"]]
    assert "red shape" in colour_prompts and "red crescent" in colour_prompts and len(colour_prompts) == 11


def test_cli_writes_json_with_chance_per_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer_dir = tmp_path / "tok"
    save_tokenizer(
        train_tokenizer(["alpha beta gamma delta epsilon zeta"] * 5, vocab_size=280), tokenizer_dir
    )
    cfg = TinyClipConfig.tiny()
    model, _, _, _ = create_tiny_clip(cfg, tokenizer_dir, seed=0)
    save_open_clip_dir(model, cfg, tmp_path / "clip", tokenizer_dir=tokenizer_dir)
    write_task(tmp_path / "world" / "tasks" / "six", [(0, 0), (1, 1), (2, 2)])
    write_task(tmp_path / "world" / "tasks" / "two", [(0, 0), (1, 1)], classes=("alpha", "beta"))
    out = tmp_path / "zs.json"
    assert (
        main(
            [
                "--model",
                str(tmp_path / "clip"),
                "--world",
                str(tmp_path / "world"),
                "--json",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    by_task = {r["task"]: r for r in printed["tasks"]}
    assert set(by_task) == {"six", "two"}
    assert by_task["six"]["chance"] == pytest.approx(1 / 6) and by_task["two"]["chance"] == 0.5
    assert by_task["two"]["top5"] is None and by_task["six"]["num_images"] == 3
    assert all(0.0 <= r["top1"] <= 1.0 for r in printed["tasks"])
