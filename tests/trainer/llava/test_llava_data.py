"""LLaVA training data: exact label masks per template, validation errors, AnyRes parity, dropping, batching."""

from __future__ import annotations

import PIL.Image
import pytest
import torch

from tests.support.llava_fixtures import stage2_records, write_images, write_json
from trainer.llava.collate import LlavaCollator
from trainer.llava.data import DataError, load_dataset
from trainer.llava.encode import IGNORE_INDEX, EncodingError, encode_prompt
from trainer.llava.sampler import length_grouped_batches, padding_fraction
from vision_common.anyres.geometry import AnyResConfig
from vision_common.anyres.pixels import PixelConfig
from vision_common.chat.conversation import Conversation, Message, from_llava_turns
from vision_common.chat.templates import TEMPLATES, render

IMAGE_ID = 4


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    write_images(folder)
    return folder


def supervised_runs(tiny_tokenizer, encoded) -> list[str]:
    """Decoded maximal runs of supervised tokens."""
    runs, current = [], []
    for token, label in zip(encoded.input_ids, encoded.labels):
        if label != IGNORE_INDEX:
            assert label == token  # labels are the ids themselves; the model shifts them
            current.append(token)
        elif current:
            runs.append(tiny_tokenizer.decode(current))
            current = []
    if current:
        runs.append(tiny_tokenizer.decode(current))
    return runs


# The supervised text of a two-turn chat: each answer and its end-of-turn text. Where the template puts a
# space before the answer ("ASSISTANT: ", "[/INST] "), byte-level BPE merges it into the answer's first
# token, which is supervised (the model generates " a ..." after "ASSISTANT:"), as LLaVA's preprocess_v1.
EXPECTED_RUNS = {
    "vicuna_v1": [" a red star.</s>", " three</s>"],
    "llava_v1": [" a red star.</s>", " three</s>"],
    "mistral_instruct": [" a red star. </s>", " three </s>"],
    "llava_llama_2": [" a red star. </s>", " three </s>"],
    "chatml_direct": ["a red star.<|im_end|>", "three<|im_end|>"],
    "llama_3": ["a red star.<|eot_id|>", "three<|eot_id|>"],
    "plain": ["a red star.\n"],
}


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_label_mask_is_exact_for_every_template(tiny_tokenizer, template):
    assert set(EXPECTED_RUNS) == set(TEMPLATES)  # a new template needs its own expectation
    turns = [Message("user", "what is it?", ("img",)), Message("assistant", "a red star.")]
    if template != "plain":
        turns += [Message("user", "how many?"), Message("assistant", "three")]
    rendered = render(Conversation(tuple(turns)), template, add_generation_prompt=False)
    encoded = encode_prompt(rendered, tiny_tokenizer, image_token_id=IMAGE_ID, image_token_counts=[5])
    assert supervised_runs(tiny_tokenizer, encoded) == EXPECTED_RUNS[template]
    # the one <image> became exactly 5 placeholders, all unsupervised, contiguous
    positions = [i for i, t in enumerate(encoded.input_ids) if t == IMAGE_ID]
    assert len(positions) == 5 and positions == list(range(positions[0], positions[0] + 5))
    assert all(encoded.labels[i] == IGNORE_INDEX for i in positions)


def test_plain_template_masks_everything_but_caption_and_newline(tiny_tokenizer):
    rendered = render(
        Conversation((Message("user", "ignored", ("img",)), Message("assistant", "a red star."))),
        "plain",
        add_generation_prompt=False,
    )
    assert rendered.text == "<image>a red star.\n"
    encoded = encode_prompt(rendered, tiny_tokenizer, image_token_id=IMAGE_ID, image_token_counts=[3])
    caption_ids = tiny_tokenizer("a red star.\n")["input_ids"]
    assert list(encoded.input_ids) == [IMAGE_ID] * 3 + caption_ids
    assert list(encoded.labels) == [IGNORE_INDEX] * 3 + caption_ids


def test_encode_errors_name_the_sample(tiny_tokenizer):
    rendered = render(
        Conversation((Message("user", "q", ("img",)), Message("assistant", "a"))),
        "vicuna_v1",
        add_generation_prompt=False,
    )
    with pytest.raises(EncodingError, match="rec7: the prompt tokenizes to 1 image token.*2 image"):
        encode_prompt(
            rendered, tiny_tokenizer, image_token_id=IMAGE_ID, image_token_counts=[3, 3], where="rec7"
        )
    no_answer = render(Conversation((Message("user", "q"),)), "vicuna_v1", add_generation_prompt=False)
    with pytest.raises(EncodingError, match="no supervised tokens"):
        encode_prompt(no_answer, tiny_tokenizer, image_token_id=IMAGE_ID, image_token_counts=[])


def load(tmp_path, records, images, tiny_tokenizer, *, template="vicuna_v1", max_length=4000, cfg=None):
    path = write_json(tmp_path / "data.json", records)
    return load_dataset(
        path,
        images,
        tiny_tokenizer,
        template=template,
        anyres=cfg or AnyResConfig.tiny(),
        pixels=PixelConfig(),
        image_token_id=IMAGE_ID,
        max_length=max_length,
    )


def test_dataset_matches_llava_next_processor_exactly(tmp_path, images, tiny_tokenizer):
    """input_ids (with AnyRes expansion) and pixel_values equal transformers' LlavaNextProcessor output."""
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor

    from vision_common.anyres.geometry import transformers_image_processor_kwargs

    cfg = AnyResConfig.tiny()
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(**transformers_image_processor_kwargs(cfg), do_pad=True),
        tokenizer=tiny_tokenizer,
        patch_size=cfg.patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    records = stage2_records(copies=1)
    dataset, report = load(tmp_path, records, images, tiny_tokenizer)
    assert report.samples == len(records) == 6 and report.image_samples == 5
    by_id = {r["id"]: r for r in records}
    for index, sample in enumerate(dataset.samples):
        conversation = from_llava_turns(by_id[sample.record_id]["conversations"], images=sample.image_paths)
        text = render(conversation, "vicuna_v1", add_generation_prompt=False).text
        pil = [PIL.Image.open(p).convert("RGB") for p in sample.image_paths]
        expected = processor(text=text, images=pil or None, return_tensors="pt")
        assert list(sample.encoded.input_ids) == expected["input_ids"][0].tolist(), sample.record_id
        item = dataset[index]
        for image_index, pixels in enumerate(item["pixel_values"]):
            assert torch.equal(pixels, expected["pixel_values"][image_index][: pixels.shape[0]])
        if pil:
            assert [list(s) for s in item["image_sizes"]] == expected["image_sizes"].tolist()


def test_over_length_samples_are_dropped_and_counted(tmp_path, images, tiny_tokenizer):
    records = stage2_records(copies=1)
    full, _ = load(tmp_path, records, images, tiny_tokenizer)
    lengths = {s.record_id: s.length for s in full.samples}
    limit = sorted(lengths.values())[2]  # keeps the 3 shortest
    dataset, report = load(tmp_path, records, images, tiny_tokenizer, max_length=limit)
    kept = {s.record_id for s in dataset.samples}
    assert kept == {rid for rid, n in lengths.items() if n <= limit} and len(kept) == 3
    assert set(report.dropped_over_length) == set(lengths) - kept
    assert report.to_dict()["dropped_over_length"] == 3 and report.longest_kept == limit
    # nothing was truncated: kept samples have their full length
    assert all(s.length == lengths[s.record_id] for s in dataset.samples)
    with pytest.raises(DataError, match="all 6 record.*max_length=10"):
        load(tmp_path, records, images, tiny_tokenizer, max_length=16 - 6)


def record(rid, image, *turns):
    out = {"id": rid, "conversations": [{"from": s, "value": v} for s, v in turns]}
    if image is not None:
        out["image"] = image
    return out


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            record("r1", "missing.png", ("human", "<image>\nq"), ("gpt", "a")),
            r"record 'r1': field 'image': file .*missing.png does not exist",
        ),
        (record("r2", "square.png", ("human", "<image>\nq")), r"record 'r2'.*no gpt answer"),
        (
            record("r3", None, ("human", "<image>\nq"), ("gpt", "a")),
            r"record 'r3'.*'<image>' but the record has no 'image'",
        ),
        (
            record("r4", ["square.png", "wide.png"], ("human", "<image>\nq"), ("gpt", "a")),
            r"record 'r4': field 'image' lists 2 image\(s\) but the human turns hold 1",
        ),
        (
            record("r5", "square.png", ("human", "<image>\nq"), ("robot", "a")),
            r"record 'r5'.*conversations\[1\]\.from",
        ),
        (
            record("r6", ["square.png"], ("human", "<image>\nq"), ("gpt", "<image> a")),
            r"record 'r6'.*in a gpt turn",
        ),
        ({"conversations": []}, r"record #1.*'id'"),
    ],
)
def test_bad_records_fail_with_file_record_and_field(tmp_path, images, tiny_tokenizer, bad, message):
    good = record("ok", "square.png", ("human", "<image>\nq"), ("gpt", "a"))
    with pytest.raises(DataError, match=message) as info:
        load(tmp_path, [good, bad], images, tiny_tokenizer)
    assert str(tmp_path / "data.json") in str(info.value)


def test_lone_image_tag_moves_to_the_front_like_llava(tmp_path, images, tiny_tokenizer):
    trailing = record("t", "square.png", ("human", "describe this.\n<image>"), ("gpt", "a star"))
    dataset, _ = load(tmp_path, [trailing], images, tiny_tokenizer)
    ids = list(dataset.samples[0].encoded.input_ids)
    after_image = ids[len(ids) - ids[::-1].index(IMAGE_ID) :]
    assert tiny_tokenizer.decode(after_image) == "\ndescribe this. ASSISTANT: a star</s>"


def test_unreadable_json_and_plain_template_without_image(tmp_path, images, tiny_tokenizer):
    (tmp_path / "data.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read LLaVA JSON"):
        load_dataset(
            tmp_path / "data.json",
            images,
            tiny_tokenizer,
            template="plain",
            anyres=AnyResConfig.tiny(),
            pixels=PixelConfig(),
            image_token_id=IMAGE_ID,
            max_length=100,
        )
    text_only = record("t0", None, ("human", "q"), ("gpt", "a"))
    with pytest.raises(DataError, match="record 't0'.*has no image"):
        load(tmp_path, [text_only], images, tiny_tokenizer, template="plain")


def test_collator_pads_right_and_stacks_images():
    items = [
        {
            "input_ids": torch.tensor([5, 6, 7]),
            "labels": torch.tensor([-100, 6, 7]),
            "pixel_values": [torch.ones(3, 3, 2, 2)],
            "image_sizes": [(2, 4)],
        },
        {"input_ids": torch.tensor([8]), "labels": torch.tensor([8]), "pixel_values": [], "image_sizes": []},
        {
            "input_ids": torch.tensor([9, 9]),
            "labels": torch.tensor([9, -100]),
            "pixel_values": [torch.full((5, 3, 2, 2), 2.0), torch.full((1, 3, 2, 2), 3.0)],
            "image_sizes": [(4, 4), (1, 1)],
        },
    ]
    batch = LlavaCollator(pad_token_id=0)(items)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0], [9, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100], [9, -100, -100]]
    assert batch["pixel_values"].shape == (3, 5, 3, 2, 2)  # 3 images, padded to 5 crops
    assert batch["pixel_values"][0, :3].eq(1).all() and batch["pixel_values"][0, 3:].eq(0).all()
    assert batch["pixel_values"][2, 0].eq(3).all() and batch["pixel_values"][2, 1:].eq(0).all()
    assert batch["image_sizes"].tolist() == [[2, 4], [4, 4], [1, 1]]
    assert "pixel_values" not in LlavaCollator(0)([items[1]])


def test_length_grouped_batches_are_deterministic_complete_and_less_padded():
    lengths = [((i * 37) % 101) + 1 for i in range(200)]
    a = length_grouped_batches(lengths, 4, seed=3, epoch=0, megabatch_factor=10)
    assert a == length_grouped_batches(lengths, 4, seed=3, epoch=0, megabatch_factor=10)
    assert a != length_grouped_batches(lengths, 4, seed=3, epoch=1, megabatch_factor=10)
    assert sorted(i for batch in a for i in batch) == list(range(200))
    assert all(len(batch) == 4 for batch in a)
    plain = length_grouped_batches(lengths, 4, seed=3, epoch=0, group_by_length=False)
    assert sorted(i for batch in plain for i in batch) == list(range(200))
    assert padding_fraction(a, lengths) < 0.5 * padding_fraction(plain, lengths)
