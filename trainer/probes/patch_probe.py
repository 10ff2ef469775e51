"""Linear probe of a vision tower's patch tokens: do they say which object is where?

    python -m trainer.probes.patch_probe --tower DIR --world DIR [--grid 2] [--json] [--out FILE]

A LLaVA answers "what colour is the star?" from the projector's input, the tower's layer -2 patch tokens, so
the token over an object must encode the object. For every shaped object of SynthWorld scenes, each scene is
squashed to a ``grid x grid`` canvas of tower-sized tiles (grid 1 is LLaVA-NeXT's base image, grid 2 the 2x2
AnyRes canvas), the tiles go through the tower, and two features are read per object: the token of the patch
under the object's bounding-box centre ("centre") and that token concatenated with the mean of the tokens whose
patch centre lies inside the box ("region"). A multinomial logistic regression fitted on train-scene objects
predicts each object's colour and shape on held-out test scenes; reported per feature, overall and by the
object's size class. Signs are probed the same way for their word (what a "What is written on the sign?"
answer needs). ``--tower`` takes a transformers ``CLIPVisionModel`` directory or an open_clip one (the
SynthWorld CLIP, converted in memory).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from trainer.foundation.clip_data import load_rgb
from trainer.foundation.convert_clip import convert_open_clip_dir
from vision_common.atomic import emit_json_report
from vision_common.open_clip_dir import OPEN_CLIP_CONFIG_NAME

FEATURE_LAYER = -2  # LLaVA's vision_feature_layer
ANNOTATIONS = "scenes/annotations/instances_{split}.json"
IMAGES = "scenes/images/{split}"


class ProbeDataError(ValueError):
    """Scene annotations are missing or malformed; the message names the file."""


@dataclass(frozen=True)
class ProbeObject:
    image: Path
    width: int
    height: int
    bbox: tuple[float, float, float, float]  # x, y, w, h in image pixels
    labels: Mapping[str, str]  # probed attribute -> value, e.g. {"color": "red", "shape": "star"}
    size: str


# What each attribute reads off an annotation; an object is probed for the attributes it has.
PROBED_ATTRIBUTES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "color": lambda attributes: attributes.get("color") if attributes.get("shape") else None,
    "shape": lambda attributes: attributes.get("shape"),
    "sign_word": lambda attributes: attributes.get("text") or None,
}


def read_objects(world: Path, split: str, max_scenes: int) -> list[ProbeObject]:
    """The objects of the first ``max_scenes`` scenes of ``split`` that have a probed attribute: shaped objects
    (colour, shape) and signs (their word)."""
    path = world / ANNOTATIONS.format(split=split)
    try:
        data = json.loads(path.read_text())
        images = {image["id"]: image for image in data["images"]}
        chosen = set(sorted(images)[:max_scenes])
        objects = []
        for ann in data["annotations"]:
            attributes = ann["attributes"]
            labels = {name: read(attributes) for name, read in PROBED_ATTRIBUTES.items()}
            labels = {name: value for name, value in labels.items() if value}
            if ann["image_id"] not in chosen or not labels:
                continue
            image = images[ann["image_id"]]
            objects.append(
                ProbeObject(
                    world / IMAGES.format(split=split) / image["file_name"], image["width"], image["height"],
                    tuple(float(v) for v in ann["bbox"]), labels, attributes.get("size") or "unknown",
                )
            )  # fmt: skip
    except FileNotFoundError as exc:
        raise ProbeDataError(f"{path}: not found (is --world a SynthWorld folder?)") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ProbeDataError(f"{path}: malformed annotation ({exc!r})") from exc
    if not objects:
        raise ProbeDataError(f"{path}: no probed objects in the first {max_scenes} scenes")
    return objects


def patch_cells(obj: ProbeObject, canvas: int, patch: int) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """(row, column) on the canvas's patch grid of the patch under the box centre, and of every patch whose
    centre lies inside the box (empty for a box smaller than a patch)."""
    sx, sy = canvas / obj.width, canvas / obj.height
    x, y, w, h = obj.bbox
    cells = canvas // patch
    centre = (min(int((y + h / 2) * sy // patch), cells - 1), min(int((x + w / 2) * sx // patch), cells - 1))
    inside = [
        (row, col)
        for row in range(cells)
        for col in range(cells)
        if y * sy <= (row + 0.5) * patch <= (y + h) * sy and x * sx <= (col + 0.5) * patch <= (x + w) * sx
    ]
    return centre, inside


def canvas_tokens(tower: Any, pixels: torch.Tensor, grid: int, tile: int) -> torch.Tensor:
    """[3, grid*tile, grid*tile] normalised canvas -> [rows, cols, D] layer -2 patch tokens of its tiles."""
    tiles = pixels.unfold(1, tile, tile).unfold(2, tile, tile)  # 3, grid, grid, tile, tile
    tiles = tiles.permute(1, 2, 0, 3, 4).reshape(grid * grid, 3, tile, tile)
    with torch.no_grad():
        hidden = tower(tiles, output_hidden_states=True).hidden_states[FEATURE_LAYER][:, 1:, :]
    side = int(hidden.shape[1] ** 0.5)
    # [g*g, side*side, D] -> [g, g, side, side, D] -> rows = (tile row, patch row), cols = (tile col, patch col)
    grid_tokens = hidden.reshape(grid, grid, side, side, -1).permute(0, 2, 1, 3, 4)
    return grid_tokens.reshape(grid * side, grid * side, -1)


def object_features(
    tower: Any,
    objects: Sequence[ProbeObject],
    grid: int,
    mean: Sequence[float],
    std: Sequence[float],
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, D] centre features and [N, 2D] region features (centre ++ mean over the box's patches)."""
    tile, patch = tower.config.image_size, tower.config.patch_size
    canvas = tile * grid
    mean_t, std_t = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    by_image: dict[Path, list[int]] = {}
    for index, obj in enumerate(objects):
        by_image.setdefault(obj.image, []).append(index)
    centre = [torch.empty(0)] * len(objects)
    region = [torch.empty(0)] * len(objects)
    for image_path, indices in tqdm(by_image.items(), desc=desc, unit="scene", file=sys.stderr):
        image = load_rgb(image_path, "patch probe").resize((canvas, canvas), Image.BICUBIC)
        pixels = (torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - mean_t) / std_t
        tokens = canvas_tokens(tower, pixels, grid, tile)
        for index in indices:
            (row, col), inside = patch_cells(objects[index], canvas, patch)
            centre[index] = tokens[row, col]
            pooled = torch.stack([tokens[r, c] for r, c in inside]).mean(0) if inside else tokens[row, col]
            region[index] = torch.cat([tokens[row, col], pooled])
    return torch.stack(centre), torch.stack(region)


def fit_and_score(
    train_x: torch.Tensor,
    train_y: Sequence[str],
    test_x: torch.Tensor,
    test_y: Sequence[str],
    steps: int = 300,
) -> list[bool]:
    """Standardise on train, fit a softmax regression (Adam, light weight decay), return per-test correctness.
    A test label never seen in training counts as wrong."""
    classes = sorted(set(train_y))
    index = {name: i for i, name in enumerate(classes)}
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    targets = torch.tensor([index[name] for name in train_y])
    torch.manual_seed(0)
    linear = torch.nn.Linear(xs.shape[1], len(classes))
    optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(linear(xs), targets).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = linear(xt).argmax(1).tolist()
    return [index.get(name, -1) == guess for name, guess in zip(test_y, predicted)]


def summarize(correct: Sequence[bool], sizes: Sequence[str]) -> dict[str, Any]:
    by_size: dict[str, list[bool]] = {}
    for flag, size in zip(correct, sizes):
        by_size.setdefault(size, []).append(flag)
    return {
        "accuracy": round(sum(correct) / len(correct), 4) if correct else 0.0,
        "by_size": {size: round(sum(flags) / len(flags), 4) for size, flags in sorted(by_size.items())},
    }


def load_tower(path: Path) -> tuple[Any, list[float], list[float]]:
    """A ``CLIPVisionModel`` and its pixel mean/std, from a transformers or an open_clip directory."""
    from transformers import CLIPImageProcessor, CLIPVisionModel

    def from_hf(directory: Path) -> tuple[Any, list[float], list[float]]:
        processor = CLIPImageProcessor.from_pretrained(directory)
        tower = CLIPVisionModel.from_pretrained(directory).eval()
        return tower, list(processor.image_mean), list(processor.image_std)

    if (path / OPEN_CLIP_CONFIG_NAME).is_file():  # an open_clip directory: convert the tower first
        with tempfile.TemporaryDirectory() as tmp:
            return from_hf(convert_open_clip_dir(path, Path(tmp) / "tower"))
    return from_hf(path)


def run_probe(tower_dir: Path, world: Path, grid: int, train_scenes: int, test_scenes: int) -> dict[str, Any]:
    tower, mean, std = load_tower(tower_dir)
    train = read_objects(world, "train", train_scenes)
    test = read_objects(world, "test", test_scenes)
    train_centre, train_region = object_features(tower, train, grid, mean, std, "train scenes")
    test_centre, test_region = object_features(tower, test, grid, mean, std, "test scenes")
    report: dict[str, Any] = {
        "tower": str(tower_dir),
        "grid": grid,
        "feature_layer": FEATURE_LAYER,
        "train_objects": len(train),
        "test_objects": len(test),
    }
    report.update(score_attributes(train, test, (train_centre, train_region), (test_centre, test_region)))
    return report


def score_attributes(
    train: Sequence[ProbeObject],
    test: Sequence[ProbeObject],
    train_features: tuple[torch.Tensor, torch.Tensor],
    test_features: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Any]:
    """Per probed attribute: chance, majority-class rate and held-out accuracy of the centre and the region
    feature, each fitted only on the train objects that have the attribute."""
    (train_centre, train_region), (test_centre, test_region) = train_features, test_features
    report: dict[str, Any] = {}
    for attribute in PROBED_ATTRIBUTES:
        fit = [i for i, obj in enumerate(train) if attribute in obj.labels]
        held = [i for i, obj in enumerate(test) if attribute in obj.labels]
        if not fit or not held:
            continue
        train_y = [train[i].labels[attribute] for i in fit]
        test_y = [test[i].labels[attribute] for i in held]
        sizes = [test[i].size for i in held]
        report[attribute] = {
            "chance": round(1 / len(set(train_y)), 4),
            "majority": round(Counter(train_y).most_common(1)[0][1] / len(train_y), 4),
            "test_objects": len(held),
            "centre": summarize(fit_and_score(train_centre[fit], train_y, test_centre[held], test_y), sizes),
            "region": summarize(fit_and_score(train_region[fit], train_y, test_region[held], test_y), sizes),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.probes.patch_probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--tower", type=Path, required=True, help="CLIPVisionModel or open_clip directory")
    parser.add_argument("--world", type=Path, required=True, help="SynthWorld folder (reads scenes/)")
    parser.add_argument(
        "--grid", type=int, default=2, help="tiles per canvas side (1: base image; default 2)"
    )
    parser.add_argument("--train-scenes", type=int, default=1200)
    parser.add_argument("--test-scenes", type=int, default=400)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.grid < 1 or args.train_scenes < 1 or args.test_scenes < 1:
        parser.error("--grid, --train-scenes and --test-scenes must be >= 1")
    torch.set_num_threads(2)
    try:
        report = run_probe(args.tower, args.world, args.grid, args.train_scenes, args.test_scenes)
    except ProbeDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not emit_json_report(report, args.out, args.json):
        for attribute in PROBED_ATTRIBUTES:
            if attribute not in report:
                continue
            r = report[attribute]
            print(
                f"{attribute}: centre {r['centre']['accuracy']:.3f} {r['centre']['by_size']}, region "
                f"{r['region']['accuracy']:.3f} (chance {r['chance']:.3f}, majority {r['majority']:.3f}; "
                f"{r['test_objects']} test objects)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
