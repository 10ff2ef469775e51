"""Scenes, captions, tasks and rendering primitives, checked pixel by pixel and word by word."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from PIL import Image

from trainer.synthworld import bitmap_font
from trainer.synthworld.captions import NUMBER_WORDS, scene_captions, unsupported_words
from trainer.synthworld.concepts import COLORS, SHAPES, SIGN, SPECIES, plural
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.geometry import unit_parts
from trainer.synthworld.render import encode_png, render_background, shape_mask
from trainer.synthworld.sampling import BOX_GAP, zipf_quota
from trainer.synthworld.scenes import sample_scene
from trainer.synthworld.tasks import TASK_CLASSES, sample_task_image
from trainer.synthworld.world import species_plan

TINY = WorldConfig.preset("tiny")
SHAPE_WORDS = {word: shape for shape in (*SHAPES, SIGN) for word in (shape, plural(shape))}


def test_shapes_fill_their_unit_box_exactly() -> None:
    for shape in SHAPES:
        points = np.array([p for polygon, filled in unit_parts(shape) if filled for p in polygon])
        assert points.min(axis=0).tolist() == [0.0, 0.0] and points.max(axis=0).tolist() == [1.0, 1.0], shape
        for side in (7, 12, 31):
            mask = np.asarray(shape_mask(shape, side, side)) > 0
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any(), (shape, side)


@pytest.mark.parametrize("large", [False, True])
def test_scene_boxes_are_inside_apart_and_exact(large: bool) -> None:
    for index in range(12):
        spec = sample_scene(random.Random(index), TINY, large)
        low, high = TINY.large_scene_size if large else TINY.scene_size
        assert low <= spec.width <= high and low <= spec.height <= high
        boxes = [obj.bbox for obj in spec.objects]
        for x, y, w, h in boxes:
            assert x >= 0 and y >= 0 and x + w <= spec.width and y + h <= spec.height
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                gap_x = max(b[0] - (a[0] + a[2]), a[0] - (b[0] + b[2]))
                gap_y = max(b[1] - (a[1] + a[3]), a[1] - (b[1] + b[3]))
                assert max(gap_x, gap_y) >= BOX_GAP, (index, a, b)
        # Pixels changed by drawing the objects: all inside the boxes, and each box's ink touches its 4 edges.
        drawn = np.asarray(spec.render(), dtype=np.int16)
        changed = np.abs(drawn - render_background(spec.background, spec.width, spec.height)).sum(axis=2) > 0
        outside = changed.copy()
        for x, y, w, h in boxes:
            ink = changed[y : y + h, x : x + w]
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any(), (
                index,
                (x, y, w, h),
            )
            outside[y : y + h, x : x + w] = False
        assert not outside.any()


def test_large_scenes_have_small_glyph_signs_and_small_objects() -> None:
    for index in range(10):
        spec = sample_scene(random.Random(index), TINY, True)
        signs = [obj for obj in spec.objects if obj.category == SIGN]
        assert signs and all(obj.font_scale == 2 for obj in signs)
        shapes = [obj for obj in spec.objects if obj.category != SIGN]
        assert all(max(obj.bbox[2:]) <= 0.1 * min(spec.width, spec.height) + 1 for obj in shapes)


def test_captions_mention_only_present_objects_and_true_counts() -> None:
    count_phrase = re.compile(rf"\b({'|'.join(NUMBER_WORDS[2:])}) ([a-z]+)\b")
    for index in range(60):
        spec = sample_scene(random.Random(index), TINY, index % 3 == 0)
        captions = scene_captions(
            spec.objects, spec.background, spec.width, spec.height, random.Random(index)
        )
        assert len(captions) == 5 and len(set(captions)) == 5
        for caption in captions:
            assert unsupported_words(caption, spec.objects) == [], caption
            for number, noun in count_phrase.findall(caption):
                if noun in SHAPE_WORDS:
                    actual = sum(obj.category == SHAPE_WORDS[noun] for obj in spec.objects)
                    assert NUMBER_WORDS.index(number) == actual, caption


def test_caption_checker_catches_absent_words() -> None:
    spec = sample_scene(random.Random(0), TINY, False)
    absent_shape = next(s for s in SHAPES if s not in {obj.category for obj in spec.objects})
    absent_color = next(c for c in COLORS if c not in {obj.color for obj in spec.objects})
    caption = (
        f"A {absent_shape}, two {plural(absent_shape)}, a {absent_color} thing, a vorn and a sign reading ZZ."
    )
    expected = [absent_shape, plural(absent_shape), absent_color]
    expected += [w for w in ("vorn",) if all(o.species != "vorn" for o in spec.objects)]
    expected += [w for w in ("sign",) if all(o.category != SIGN for o in spec.objects)] + ["ZZ"]
    assert sorted(unsupported_words(caption, spec.objects)) == sorted(expected)


def test_task_images_show_their_class_and_distractors_differ() -> None:
    for task, classes in TASK_CLASSES.items():
        for index, name in enumerate(classes):
            image = sample_task_image(random.Random(index), TINY, task, name)
            main, *rest = image.objects
            value = {"shapes": main.category, "colors": main.color, "species": main.species}[task]
            assert value == name
            side = min(image.width, image.height)
            assert max(main.bbox[2:]) >= 0.4 * side - 1
            for other in rest:
                assert max(other.bbox[2:]) < max(main.bbox[2:])
                assert {"shapes": other.category, "colors": other.color, "species": other.species}[
                    task
                ] != name
    assert TASK_CLASSES["species"] == tuple(s.name for s in SPECIES) and len(TASK_CLASSES["species"]) == 24
    assert len(TASK_CLASSES["shapes"]) == len(TASK_CLASSES["colors"]) == 10


def test_species_long_tail_at_default_preset() -> None:
    config = WorldConfig.preset("default")
    order, assigned = species_plan(config, seed=0)
    counts = [sum(name == s for name in assigned) for s in order]
    assert counts == sorted(counts, reverse=True)
    assert 10 <= counts[-1] <= 20, counts  # the rarest species: ~10-20 pool images
    assert counts[0] > 50 * counts[-1]
    assert sum(counts) == round(config.pool_size * config.pool_species_fraction)
    # 10 * (6/11, 3/11, 2/11) = 5.45, 2.73, 1.82: floors 5, 2, 1 and the two largest remainders get the rest.
    assert zipf_quota(10, 3, 1.0) == [5, 3, 2]


def test_font_glyphs_are_distinct_and_png_is_deterministic() -> None:
    codes = bitmap_font.supported_chars()
    masks = {c: bitmap_font.glyph(c).tobytes() for c in codes}
    assert len(set(masks.values())) == 36
    assert bitmap_font.text_mask("K7", 2).shape == (14, (5 * 2 + 1) * 2)
    with pytest.raises(ValueError, match="no glyph"):
        bitmap_font.glyph("?")
    spec = sample_scene(random.Random(5), TINY, False)
    assert encode_png(spec.render()) == encode_png(sample_scene(random.Random(5), TINY, False).render())
    round_trip = Image.open(__import__("io").BytesIO(encode_png(spec.render())))
    assert np.array_equal(np.asarray(round_trip), np.asarray(spec.render()))


def test_simple_preset_has_fewer_larger_objects_and_keeps_small_detail_scenes() -> None:
    simple, default = WorldConfig.preset("simple"), WorldConfig.preset("default")
    regular = [sample_scene(random.Random(i), simple, large=False) for i in range(200)]
    counts = [len(spec.objects) for spec in regular]
    assert set(counts) == {1, 2}
    sizes = [o.size for spec in regular for o in spec.objects if o.category != SIGN]
    base = [sample_scene(random.Random(i), default, large=False) for i in range(200)]
    base_sizes = [o.size for spec in base for o in spec.objects if o.category != SIGN]
    # Weighted towards large objects (0.5 vs 0.25 of draws; a size class is measured on the drawn side).
    assert sizes.count("large") / len(sizes) > base_sizes.count("large") / len(base_sizes) + 0.1
    large = [sample_scene(random.Random(i), simple, large=True) for i in range(40)]
    assert all(sum(o.category == SIGN for o in spec.objects) == 1 for spec in large)
    assert all(1 <= sum(o.category != SIGN for o in spec.objects) <= 3 for spec in large)


def test_size_weights_are_validated() -> None:
    with pytest.raises(ValueError, match="regular_size_weights"):
        WorldConfig.preset("tiny", regular_size_weights=(0.0, 0.0, 0.0))
