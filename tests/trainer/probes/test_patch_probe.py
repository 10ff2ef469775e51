"""The vision-tower patch probe: geometry (object -> patches), tile reassembly, the regression and the report."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from trainer.probes.patch_probe import (
    ProbeDataError,
    ProbeObject,
    canvas_tokens,
    fit_and_score,
    patch_cells,
    read_objects,
    score_attributes,
    summarize,
)


def _object(bbox: tuple[float, float, float, float], width: int = 100, height: int = 50) -> ProbeObject:
    return ProbeObject(Path("x.png"), width, height, bbox, {"color": "red", "shape": "star"}, "small")


def test_patch_cells_follow_the_squash_to_the_canvas() -> None:
    # 100 x 50 image squashed to a 32-px canvas of 8-px patches: x scales by 0.32, y by 0.64.
    centre, inside = patch_cells(_object((50, 0, 50, 25)), canvas=32, patch=8)
    # box on the canvas: x 16..32, y 0..16 -> centre (24, 8) -> patch (row 1, col 3); inside: rows 0-1, cols 2-3.
    assert centre == (1, 3)
    assert inside == [(0, 2), (0, 3), (1, 2), (1, 3)]
    centre, inside = patch_cells(_object((0, 0, 4, 4)), canvas=32, patch=8)  # smaller than a patch
    assert centre == (0, 0) and inside == []
    assert patch_cells(_object((90, 40, 10, 10)), canvas=32, patch=8)[0] == (3, 3)  # clamped to the grid


class _IndexTower(torch.nn.Module):
    """Fake tower: token value = 100 * tile index + patch index, so the reassembly can be read back."""

    config = SimpleNamespace(image_size=16, patch_size=8)

    def forward(self, tiles: torch.Tensor, output_hidden_states: bool = True) -> SimpleNamespace:
        count = tiles.shape[0]
        values = torch.arange(count).view(count, 1) * 100 + torch.arange(-1, 4).view(1, 5)  # CLS first
        hidden = values.float().unsqueeze(-1)
        return SimpleNamespace(hidden_states=(hidden, hidden, hidden))


def test_canvas_tokens_reassemble_tiles_row_major() -> None:
    tokens = canvas_tokens(_IndexTower(), torch.zeros(3, 32, 32), grid=2, tile=16)
    # Tiles are row-major (0 1 / 2 3), each a 2 x 2 patch grid; the canvas is 4 x 4 patches.
    assert tokens[..., 0].tolist() == [
        [0, 1, 100, 101],
        [2, 3, 102, 103],
        [200, 201, 300, 301],
        [202, 203, 302, 303],
    ]


@pytest.mark.slow  # probe fitting, > 15 s on a loaded CPU
def test_fit_and_score_separable_and_unseen_labels() -> None:
    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    correct = fit_and_score(x, ["a", "a", "b", "b"], x[[0, 2, 3]], ["a", "b", "c"])
    assert correct == [True, True, False]  # "c" was never a training label


def test_summarize_by_size() -> None:
    report = summarize([True, False, True, True], ["small", "small", "large", "large"])
    assert report == {"accuracy": 0.75, "by_size": {"large": 1.0, "small": 0.5}}


def test_read_objects_labels_shapes_and_sign_text_and_names_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ProbeDataError, match="instances_train.json: not found"):
        read_objects(tmp_path, "train", 10)
    folder = tmp_path / "scenes" / "annotations"
    folder.mkdir(parents=True)
    star = {
        "image_id": 1,
        "bbox": [1, 2, 3, 4],
        "attributes": {"shape": "star", "color": "red", "size": "small"},
    }
    sign = {"image_id": 1, "bbox": [0, 0, 9, 9], "attributes": {"shape": None, "color": None, "text": "EXIT"}}
    blank = {"image_id": 1, "bbox": [0, 0, 9, 9], "attributes": {"shape": None, "color": None, "text": ""}}
    late = {"image_id": 2, "bbox": [1, 1, 1, 1], "attributes": {"shape": "ring", "color": "blue"}}
    images = [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}, {"id": 2, "file_name": "b.png"}]
    (folder / "instances_train.json").write_text(
        json.dumps({"images": images, "annotations": [star, sign, blank, late]})
    )
    objects = read_objects(tmp_path, "train", max_scenes=1)
    assert [(dict(o.labels), o.bbox, o.image.name) for o in objects] == [
        ({"color": "red", "shape": "star"}, (1, 2, 3, 4), "a.png"),
        ({"sign_word": "EXIT"}, (0, 0, 9, 9), "a.png"),
    ]  # the sign without text has nothing to probe
    (folder / "instances_train.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ProbeDataError, match="malformed annotation"):
        read_objects(tmp_path, "train", 10)


@pytest.mark.slow  # fits a probe per attribute (> 1 min on a loaded CPU)
def test_score_attributes_fits_each_attribute_on_the_objects_that_have_it() -> None:
    # Shaped objects: feature 0 says the colour; signs: feature 1 says the word.
    def shaped(colour: str) -> ProbeObject:
        return ProbeObject(Path("x.png"), 8, 8, (0, 0, 1, 1), {"color": colour, "shape": "star"}, "small")

    def sign(word: str) -> ProbeObject:
        return ProbeObject(Path("x.png"), 8, 8, (0, 0, 1, 1), {"sign_word": word}, "large")

    train = [shaped("red"), shaped("blue"), shaped("red"), sign("EXIT"), sign("STOP"), sign("EXIT")]
    test = [shaped("blue"), sign("STOP"), sign("EXIT")]
    rows = {"red": [1.0, 0.0], "blue": [-1.0, 0.0], "EXIT": [0.0, 1.0], "STOP": [0.0, -1.0]}

    def features(objects: list[ProbeObject]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.tensor([rows[o.labels.get("color") or o.labels["sign_word"]] for o in objects])
        return x, torch.cat([x, x], 1)

    report = score_attributes(train, test, features(train), features(test))
    assert set(report) == {"color", "shape", "sign_word"}
    assert report["color"]["test_objects"] == 1 and report["sign_word"]["test_objects"] == 2
    assert report["color"]["region"]["accuracy"] == 1.0
    assert report["sign_word"]["centre"] == {"accuracy": 1.0, "by_size": {"large": 1.0}}
    assert report["sign_word"]["chance"] == 0.5 and report["sign_word"]["majority"] == round(2 / 3, 4)
    assert report["shape"]["chance"] == 1.0  # one shape in training: the probe can only say "star"
