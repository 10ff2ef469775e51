"""A tiny random LLaVA-NeXT checkpoint built in-process, for tests that need a real model and processor.

No hub access: a byte-level BPE tokenizer is trained on a few sentences (the SynthWorld tokenizer code, with
its ``<image>`` id and vicuna_v1 chat template), then a LlavaNext model with a tiny CLIP tower (image 32,
patch 8) and a tiny Llama is initialised with a fixed seed and saved next to its processor (serving.md §7).
Saving and loading take well under a second; reusing one directory per test module keeps suites fast.

Expected image-token counts (AnyResConfig.tiny(), strategy "default"): 32x32 -> 36, 100x50 -> 52,
50x100 -> 56, 300x200 -> 70.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    GenerationConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
)

from trainer.foundation.special_tokens import IMAGE_TOKEN, IMAGE_TOKEN_ID
from trainer.foundation.tokenizer import VICUNA_V1_CHAT_TEMPLATE, train_tokenizer
from vision_common.anyres.geometry import AnyResConfig, transformers_image_processor_kwargs

TINY_ANYRES = AnyResConfig.tiny()
_CORPUS = [
    "a small blue circle is at the top right of the image.",
    "the sign on the left reads A7 and the star is red.",
    "USER: what is in the picture? ASSISTANT: a green striped square and a pink ring.",
    "there are three shapes and one sign reading QX3 in the center.",
] * 8


def build_tiny_llava(
    out_dir: str | os.PathLike[str],
    *,
    hidden: int = 64,
    layers: int = 2,
    max_positions: int = 4096,
    seed: int = 0,
    suppress_eos: bool = False,
) -> Path:
    """Write a tiny random ``LlavaNextForConditionalGeneration`` + ``LlavaNextProcessor`` to ``out_dir``.

    ``max_positions`` is the text context (what a context guard reads). ``suppress_eos`` stores a generation
    config that never samples ``</s>``, so an uncancelled generation runs to ``max_new_tokens`` (for
    cancellation and timeout tests). Returns ``out_dir`` as a Path.
    """
    out = Path(out_dir)
    tokenizer = train_tokenizer(_CORPUS, vocab_size=300)
    vision = CLIPVisionConfig(
        image_size=TINY_ANYRES.tile,
        patch_size=TINY_ANYRES.patch,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN_ID,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_grid_pinpoints=transformers_image_processor_kwargs(TINY_ANYRES)["image_grid_pinpoints"],
    )
    torch.manual_seed(seed)
    model = LlavaNextForConditionalGeneration(config).eval()
    generation = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=[tokenizer.eos_token_id] if suppress_eos else None,
    )
    model.generation_config = generation
    image_processor = LlavaNextImageProcessor(**transformers_image_processor_kwargs(TINY_ANYRES), do_pad=True)
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=TINY_ANYRES.patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        chat_template=VICUNA_V1_CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
