"""Parity of vision_common.anyres.geometry / anyres_pixels with transformers 5.x LLaVA-NeXT, built in-process (offline).

* token counts == the number of ``<image>`` tokens ``LlavaNextProcessor`` inserts (CLIP: "default" strategy,
  num_additional_image_tokens=1), over 120+ sizes, full 336/14 config and the tiny 32/8 one;
* pixels: the "torch" backend vs ``LlavaNextImageProcessor`` (torchvision) and the "pil" backend vs
  ``LlavaNextImageProcessorPil``. Tolerance atol=1e-5, rtol=0: both sides resize in uint8 with the same kernel,
  so the only float work is the normalisation, done with the same ops (bit-identical in practice); 1e-5 is far
  below one uint8 level after CLIP normalisation (1 / (255 * 0.2758) = 0.0142), so any resize difference fails;
* a tiny random ``LlavaNextForConditionalGeneration`` accepts our pixels with our token count and rejects
  one token fewer.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    PreTrainedTokenizerFast,
)

from vision_common.anyres.geometry import (
    AnyResConfig,
    num_image_tokens,
    plan,
    transformers_image_processor_kwargs,
    transformers_pinpoints,
)
from vision_common.anyres.pixels import PixelConfig, batch_for_model, preprocess

ATOL = 1e-5
TINY = AnyResConfig.tiny()
FULL = AnyResConfig.llava_1_6()

# (W, H): edge cases, squares around tile multiples, the llava.md table, long strips, sizes where
# x.9999999 float products make transformers' round(x, 7) matter (47x1128, 88x55, 188x47), phone photos.
NAMED_SIZES = [
    (1, 1), (2, 3), (3, 2), (17, 5), (5, 17), (1, 4000), (4000, 1), (4, 4000), (4000, 3), (1, 2), (2, 1),
    (7, 7), (31, 31), (32, 32), (33, 33), (64, 64), (100, 100), (335, 335), (336, 336), (337, 337), (672, 672),
    (1000, 1000), (2048, 2048), (33, 32), (100, 50), (50, 100), (300, 200), (200, 300), (640, 480), (480, 640),
    (800, 600), (1280, 720), (720, 1280), (1920, 1080), (1080, 1920), (672, 336), (336, 672), (1008, 336),
    (336, 1008), (2000, 500), (500, 2000), (999, 333), (333, 999), (1344, 336), (96, 32), (32, 96), (123, 457),
    (457, 123), (1023, 767), (511, 512), (673, 671), (47, 1128), (44, 55), (47, 47),
    (88, 55), (188, 47), (47, 188),
    (4032, 3024), (3024, 4032),
]  # fmt: skip
RANDOM_SIZES = [
    tuple(int(v) for v in pair) for pair in np.random.default_rng(7).integers(1, 700, size=(70, 2))
]


def _image(size: tuple[int, int], seed: int = 0, mode: str = "RGB") -> PIL.Image.Image:
    width, height = size
    noise = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return PIL.Image.fromarray(noise).convert(mode)


def _tokenizer() -> PreTrainedTokenizerFast:
    vocab = {
        token: index for index, token in enumerate(["<unk>", "<s>", "</s>", "<pad>", "describe", "this", "."])
    }
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(["<image>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_input_names=["input_ids", "attention_mask"],
    )


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return _tokenizer()


def _processor(cfg: AnyResConfig, tokenizer, strategy: str = "default", extra: int = 1) -> LlavaNextProcessor:
    return LlavaNextProcessor(
        image_processor=LlavaNextImageProcessor(**transformers_image_processor_kwargs(cfg)),
        tokenizer=tokenizer,
        patch_size=cfg.patch,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=extra,
    )


def _inserted_image_tokens(processor: LlavaNextProcessor, size: tuple[int, int]) -> int:
    # Constant images: token counts depend on the size only, and PIL.Image.new is cheap even at 12 MP.
    image = PIL.Image.new("RGB", size, (90, 120, 150))
    ids = processor(images=image, text="describe <image> this", return_tensors="pt")["input_ids"]
    return int((ids == processor.image_token_id).sum())


def test_enough_distinct_sizes():
    assert len(set(NAMED_SIZES) | set(RANDOM_SIZES)) >= 120


@pytest.mark.parametrize("cfg", [FULL, TINY], ids=["llava336", "tiny32"])
def test_token_count_matches_llava_next_processor(cfg, tokenizer):
    processor = _processor(cfg, tokenizer)
    mismatches = {}
    for size in NAMED_SIZES + RANDOM_SIZES:
        expected = _inserted_image_tokens(processor, size)
        if num_image_tokens(size, cfg) != expected:
            mismatches[size] = (num_image_tokens(size, cfg), expected)
    assert not mismatches


@pytest.mark.parametrize(("strategy", "has_cls"), [("full", True), ("default", False), ("full", False)])
def test_token_count_matches_processor_other_strategies(strategy, has_cls, tokenizer):
    processor = _processor(TINY, tokenizer, strategy=strategy, extra=int(has_cls))
    for size in NAMED_SIZES[:30]:
        assert num_image_tokens(size, TINY, strategy, has_cls) == _inserted_image_tokens(processor, size), (
            size
        )


def _assert_pixel_parity(ours, reference) -> None:
    expected = reference["pixel_values"][0]
    assert ours.pixel_values.shape == expected.shape
    assert ours.pixel_values.dtype == torch.float32
    torch.testing.assert_close(ours.pixel_values, expected, atol=ATOL, rtol=0)
    assert list(ours.image_size_hw) == reference["image_sizes"][0].tolist()


@pytest.mark.parametrize("backend", ["torch", "pil"])
def test_pixels_match_image_processor_tiny(backend):
    cls = LlavaNextImageProcessor if backend == "torch" else LlavaNextImageProcessorPil
    reference = cls(**transformers_image_processor_kwargs(TINY))
    pixel_cfg = PixelConfig(resize_backend=backend)
    for index, size in enumerate(NAMED_SIZES[:-2] + RANDOM_SIZES[:20]):  # all but the two 12 MP photos
        image = _image(size, seed=index)
        _assert_pixel_parity(preprocess(image, TINY, pixel_cfg), reference(image, return_tensors="pt"))


@pytest.mark.parametrize("backend", ["torch", "pil"])
@pytest.mark.parametrize("size", [(4032, 3024), (640, 480), (1, 4000), (17, 5), (336, 336)])
def test_pixels_match_image_processor_full(backend, size):
    cls = LlavaNextImageProcessor if backend == "torch" else LlavaNextImageProcessorPil
    reference = cls(**transformers_image_processor_kwargs(FULL))
    image = _image(size, seed=1)
    ours = preprocess(image, FULL, PixelConfig(resize_backend=backend))
    _assert_pixel_parity(ours, reference(image, return_tensors="pt"))
    assert ours.pixel_values.shape[0] == plan(size, FULL).num_crops


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "I;16"])
def test_pixels_match_for_non_rgb_modes(mode):
    image = _image((45, 29), seed=3, mode=mode if mode != "I;16" else "L")
    if mode == "RGBA":  # real transparency: composited onto white by both sides
        image.putalpha(PIL.Image.linear_gradient("L").resize(image.size))
    if mode == "I;16":
        image = PIL.Image.fromarray(np.asarray(image).astype(np.uint16) * 200)  # uint16 -> mode "I;16"
        assert image.mode == "I;16"
    reference = LlavaNextImageProcessor(**transformers_image_processor_kwargs(TINY))
    _assert_pixel_parity(preprocess(image, TINY), reference(image, return_tensors="pt"))


def test_the_two_resize_kernels_really_differ():
    # Why there are two backends: PIL's and torch's uint8 bicubic disagree by a uint8 level here and there.
    image = _image((640, 480), seed=5)
    torch_path = preprocess(image, TINY, PixelConfig(resize_backend="torch")).pixel_values
    pil_path = preprocess(image, TINY, PixelConfig(resize_backend="pil")).pixel_values
    difference = (torch_path - pil_path).abs().max().item()
    assert 0.01 < difference < 0.1  # 1-3 uint8 levels, never more


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resize_backend": "cv2"}, "resize_backend must be one of"),
        ({"std": (0.5, 0.0, 0.5)}, "std must be positive"),
        ({"mean": (0.5, 0.5)}, "need 3 values"),
        ({"rescale_factor": 0}, "rescale_factor must be positive"),
    ],
)
def test_pixel_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PixelConfig(**kwargs)


def test_preprocess_and_batch_reject_bad_input():
    with pytest.raises(TypeError, match="expected a PIL.Image.Image, got ndarray"):
        preprocess(np.zeros((4, 4, 3), np.uint8), TINY)
    with pytest.raises(ValueError, match="different tile sizes"):
        batch_for_model(
            [preprocess(_image((8, 8)), TINY), preprocess(_image((8, 8)), AnyResConfig.llava_1_6(64, 8))]
        )
    with pytest.raises(ValueError, match="at least one image"):
        batch_for_model([])


@pytest.fixture(scope="module")
def tiny_model(tokenizer) -> LlavaNextForConditionalGeneration:
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        image_size=TINY.tile,
        patch_size=TINY.patch,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_grid_pinpoints=transformers_pinpoints(TINY),
    )
    return LlavaNextForConditionalGeneration(config).eval()


def _input_ids(tokenizer, image_tokens: list[int]) -> torch.Tensor:
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    rows = [[tokenizer.bos_token_id, *([image_id] * count), 4, 5] for count in image_tokens]
    width = max(len(row) for row in rows)
    return torch.tensor([[tokenizer.pad_token_id] * (width - len(row)) + row for row in rows])


@pytest.mark.parametrize("size", [(32, 32), (100, 50), (50, 100), (300, 200), (17, 5), (1, 400), (23, 97)])
def test_tiny_model_accepts_our_pixels_and_token_count(size, tiny_model, tokenizer):
    pixels = preprocess(_image(size), TINY)
    batch = batch_for_model([pixels])
    count = num_image_tokens(size, TINY)
    with torch.no_grad():
        logits = tiny_model(input_ids=_input_ids(tokenizer, [count]), **batch).logits
        assert logits.shape[1] == count + 3
        with pytest.raises(ValueError, match="[Ii]mage features and image tokens do not match"):
            tiny_model(input_ids=_input_ids(tokenizer, [count - 1]), **batch)


def test_tiny_model_batch_with_padded_crops(tiny_model, tokenizer):
    sizes = [(300, 200), (32, 32)]  # 5 crops and 3 crops: the second is zero-padded to 5
    batch = batch_for_model([preprocess(_image(size), TINY) for size in sizes])
    assert batch["pixel_values"].shape == (2, 5, 3, 32, 32)
    assert torch.count_nonzero(batch["pixel_values"][1, 3:]) == 0
    counts = [num_image_tokens(size, TINY) for size in sizes]
    with torch.no_grad():
        assert tiny_model(input_ids=_input_ids(tokenizer, counts), **batch).logits.shape[0] == 2
