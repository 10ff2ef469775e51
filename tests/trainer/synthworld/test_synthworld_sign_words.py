"""Signs say words from a closed vocabulary (issue #18): scenes, pool captions, questions and caption checks."""

from __future__ import annotations

import random
from collections import Counter

from trainer.foundation.clip_aux import caption_sign_word
from trainer.synthworld.captions import scene_captions, unsupported_words
from trainer.synthworld.concepts import COLOR_NAMES, SHAPES, SIGN, SIGN_WORDS
from trainer.synthworld.config import WorldConfig
from trainer.synthworld.placed import scene_view
from trainer.synthworld.questions import multiple_choice_questions, short_answer_questions
from trainer.synthworld.scene_view import SceneObject, SceneView
from trainer.synthworld.scenes import sample_scene
from trainer.synthworld.web_pool import PoolPlan, sample_pool_item

TINY = WorldConfig.preset("tiny")


def test_vocabulary_is_sixteen_distinct_four_letter_upper_case_words() -> None:
    assert len(SIGN_WORDS) == len(set(SIGN_WORDS)) == 16
    assert all(len(word) == 4 and word.isalpha() and word.isupper() for word in SIGN_WORDS)
    # never a word the other vocabularies use, in any case
    assert not {word.lower() for word in SIGN_WORDS} & {*SHAPES, *COLOR_NAMES, SIGN}


def test_scene_signs_say_vocabulary_words_at_their_glyph_scale_and_captions_name_them() -> None:
    words: Counter[str] = Counter()
    sign_scenes = named_scenes = 0
    for index in range(120):
        large = index % 3 == 0
        spec = sample_scene(random.Random(index), TINY, large)
        signs = [obj for obj in spec.objects if obj.category == SIGN]
        for sign in signs:
            assert sign.text in SIGN_WORDS
            assert sign.font_scale == (TINY.large_glyph_scale if large else TINY.regular_glyph_scale)
            words[sign.text] += 1
        captions = scene_captions(
            spec.objects, spec.background, spec.width, spec.height, random.Random(index)
        )
        assert all(unsupported_words(caption, spec.objects) == [] for caption in captions)
        sign_scenes += bool(signs)
        named_scenes += any(sign.text in caption.split() for caption in captions for sign in signs)
    assert len(words) >= 12  # uniform over 16 words: most show up in ~100 signs
    assert named_scenes >= 0.7 * sign_scenes  # measured 51 of 64: most name the word in some sentence


def test_pool_sign_captions_usually_name_the_word_and_never_a_wrong_one() -> None:
    plan = PoolPlan(SHAPES, COLOR_NAMES, 0.5, 0.6)
    items = [sample_pool_item(random.Random(index), TINY, plan, None) for index in range(600)]
    signs = [item for item in items if item.objects[0].category == SIGN]
    assert 0.08 <= len(signs) / len(items) <= 0.2  # 15% drawn; some plates do not fit a small image
    named = [caption_sign_word(item.caption) for item in signs]
    assert all(word in (None, item.objects[0].text) for word, item in zip(named, signs))
    assert sum(word is not None for word in named) >= 0.6 * len(signs)


def test_text_questions_answer_the_word_and_offer_other_words() -> None:
    sign = SceneObject(SIGN, (10, 10, 60, 30), text="EXIT")
    star = SceneObject("star", (100, 100, 30, 30), color="red")
    scene = SceneView(200, 200, (sign, star))
    texts = [qa for qa in short_answer_questions(scene, random.Random(0)) if qa.category == "text"]
    assert [qa.answer for qa in texts] == ["EXIT"] and texts[0].question.startswith(
        "What is written on the sign"
    )
    texts = [mc for mc in multiple_choice_questions(scene, random.Random(0)) if mc.category == "text"]
    assert texts
    for mc in texts:
        assert mc.answer == "EXIT" and set(mc.options) <= set(SIGN_WORDS) and len(set(mc.options)) == 4


def test_unsupported_words_flags_an_absent_sign_word() -> None:
    spec = sample_scene(random.Random(7), TINY, True)
    present = {obj.text for obj in spec.objects if obj.text}
    absent = next(word for word in SIGN_WORDS if word not in present)
    assert unsupported_words(
        f"a sign that says {absent}", scene_view(spec.width, spec.height, spec.objects).objects
    ) == [absent]
