"""COCO reader: the join is exact, and each kind of bad input gives a clear error and no output file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.data_engine_fixtures import write_coco_sample
from trainer.data_engine import BuildConfig, RuleTeacher, build_instruction_data, build_stage1_data
from trainer.data_engine.coco import CocoFormatError, find_coco_files, load_coco
from vision_common.atomic import OutputNotWritableError


def test_real_coco_sample_joins_per_image(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    dataset = load_coco(captions, instances, images)
    assert [image.image_id for image in dataset.images] == [1, 2, 3]
    first, _, third = dataset.images
    assert (first.width, first.height) == (200, 150)
    assert first.captions == (
        "A man rides a bicycle next to a bus.",
        "A cyclist passes a bus and a car on the street.",
    )
    assert [a["category_id"] for a in first.annotations] == [1, 2, 6, 3]
    assert third.file_name == "sub/000000000003.jpg" and third.path == images / "sub" / "000000000003.jpg"
    assert dataset.category_names[18] == "dog"
    assert [image.image_id for image in load_coco(captions, instances, images, limit=2).images] == [1, 2]


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("target", "change", "expected"),
    [
        ("instances", lambda d: d.pop("categories"), "missing top-level key 'categories'"),
        ("captions", lambda d: d.pop("annotations"), "missing top-level key 'annotations'"),
        (
            "instances",
            lambda d: d["annotations"][2].update(bbox=[1, 2, 3]),
            "annotations[2] (id=3) field 'bbox'",
        ),
        ("instances", lambda d: d["annotations"][0].update(bbox=[10, 10, 0, 5]), "non-positive width/height"),
        ("instances", lambda d: d["annotations"][0].update(bbox=[180, 10, 50, 5]), "lies outside image 1"),
        ("instances", lambda d: d["annotations"][1].update(image_id=99), "points at unknown image 99"),
        ("instances", lambda d: d["annotations"][1].update(category_id=77), "points at unknown category 77"),
        ("instances", lambda d: d["annotations"][1].pop("bbox"), "is missing field 'bbox'"),
        ("captions", lambda d: d["annotations"][0].update(caption=""), "annotations[0] field 'caption'"),
        ("captions", lambda d: d["annotations"][0].update(image_id=5), "points at unknown image 5"),
        ("instances", lambda d: d["images"][0].update(width=-3), "images[0] (id=1) field 'width'"),
        (
            "instances",
            lambda d: d["images"][0].update(file_name="../x.jpg"),
            "field 'file_name' must be relative",
        ),
        ("captions", lambda d: d["images"].pop(), "list different images"),
        ("instances", lambda d: d["annotations"][0].update(attributes=[1]), "field 'attributes'"),
    ],
)
def test_malformed_coco_is_named_by_file_and_field(
    tmp_path: Path, target: str, change, expected: str
) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    path = captions if target == "captions" else instances
    _edit(path, change)
    with pytest.raises(CocoFormatError) as info:
        load_coco(captions, instances, images)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    instances.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(
        CocoFormatError, match=r"instances file .*instances\.json: malformed JSON at line 2 column 12"
    ):
        load_coco(captions, instances, images)
    with pytest.raises(CocoFormatError, match="does not exist"):
        load_coco(tmp_path / "nope.json", instances, images)


def test_missing_image_file_is_reported_and_no_output_written(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    (images / "sub" / "000000000003.jpg").unlink()
    out = tmp_path / "out" / "data.json"
    with pytest.raises(CocoFormatError, match=r"1 image file\(s\) missing .*sub/000000000003\.jpg"):
        build_instruction_data(
            captions, instances, images, out, RuleTeacher(), BuildConfig(show_progress=False)
        )
    assert not out.exists()
    # Only the images that are used must exist: the first two are complete.
    stats = build_instruction_data(
        captions, instances, images, out, RuleTeacher(), BuildConfig(limit=2, show_progress=False)
    )
    assert stats.images == 2 and out.is_file()


def test_unwritable_output_fails_before_work_and_leaves_nothing(tmp_path: Path) -> None:
    captions, instances, images = write_coco_sample(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    out = blocker / "data.json"
    with pytest.raises(OutputNotWritableError, match=str(out)):
        build_instruction_data(
            captions, instances, images, out, RuleTeacher(), BuildConfig(show_progress=False)
        )
    with pytest.raises(OutputNotWritableError, match="is a directory"):
        build_stage1_data(captions, instances, images, tmp_path)
    assert blocker.read_text() == "a file where a directory should be"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "blocker",
        "captions.json",
        "images",
        "instances.json",
    ]


def test_find_coco_files(tmp_path: Path) -> None:
    (tmp_path / "captions_train.json").write_text("{}")
    (tmp_path / "instances_train.json").write_text("{}")
    assert find_coco_files(tmp_path, "train") == (
        tmp_path / "captions_train.json",
        tmp_path / "instances_train.json",
    )
    with pytest.raises(CocoFormatError, match="captions_val.json"):
        find_coco_files(tmp_path, "val")
