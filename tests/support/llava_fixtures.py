"""Tiny on-disk parts for the LLaVA trainer tests: CLIP tower, Llama LM, tokenizer, images, LLaVA JSON.

Everything is built in-process from fixed seeds (no hub): a CLIPVisionModel (image 32, patch 8, hidden 32,
2 layers), the project's tiny Llama (hidden 32, 2 layers) and a byte-level BPE tokenizer with the SynthWorld
special ids (``<image>`` = 4) and the vicuna_v1 chat template. Building all parts takes about a second.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

from trainer.foundation.tiny_lm import TinyLMConfig, build_tiny_lm
from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer

CORPUS = [
    "a small blue circle is at the top right of the image.",
    "the sign on the left reads A7 and the star is red.",
    "what colour is the star? red",
    "how many shapes are there? three",
    "describe the picture briefly. a green striped square and a pink ring.",
    "USER: what is in the picture? ASSISTANT: a green striped square and a pink ring.",
] * 8
# (width, height): square (first-tie canvas), wide, tall, large wide (2x2 canvas).
IMAGE_SIZES = {"square.png": (32, 32), "wide.png": (64, 32), "tall.png": (40, 60), "big.png": (100, 50)}
CAPTIONS = {
    "square.png": "a red star in the center.",
    "wide.png": "a blue circle left of a green square.",
    "tall.png": "a sign that reads A7.",
    "big.png": "three shapes and a pink ring.",
}


@dataclass(frozen=True)
class PartsPaths:
    vision: Path
    lm: Path
    tokenizer: Path
    images: Path


def tiny_tokenizer():
    return train_tokenizer(CORPUS, vocab_size=300)


def write_parts(root: Path, seed: int = 0, tokenizer=None) -> PartsPaths:
    """Vision tower, LM and tokenizer directories plus an image folder under ``root``.

    ``tokenizer`` defaults to a freshly trained ``tiny_tokenizer()`` (pass the session one to skip training).
    """
    tokenizer = tiny_tokenizer() if tokenizer is None else tokenizer
    torch.manual_seed(seed)
    vision_dir, lm_dir, tok_dir, images = (
        root / "clip-vision",
        root / "lm",
        root / "tokenizer",
        root / "images",
    )
    vision = CLIPVisionModel(
        CLIPVisionConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            hidden_act="gelu",
        )
    )
    vision.save_pretrained(vision_dir)
    CLIPImageProcessor(
        size={"shortest_edge": 32},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.5, 0.4, 0.3],
        image_std=[0.25, 0.2, 0.3],
    ).save_pretrained(vision_dir)
    # 1024 positions: the vicuna system prompt alone is ~200 tokens with this 300-entry vocabulary.
    lm_config = replace(TinyLMConfig.tiny(), max_position_embeddings=1024)
    build_tiny_lm(lm_config, tokenizer).save_pretrained(lm_dir)
    save_tokenizer(tokenizer, tok_dir)
    write_images(images, seed)
    return PartsPaths(vision_dir, lm_dir, tok_dir, images)


def write_images(folder: Path, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for name, size in IMAGE_SIZES.items():
        image = PIL.Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        for _ in range(6):  # a few blocks so tiles differ from each other
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            block = PIL.Image.new("RGB", (8, 8), tuple(rng.randrange(256) for _ in range(3)))
            image.paste(block, (x, y))
        image.save(folder / name)


def stage1_records(copies: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "id": f"cap{copy}_{name}",
            "image": name,
            "conversations": [
                {"from": "human", "value": "<image>\ndescribe the picture briefly."},
                {"from": "gpt", "value": caption},
            ],
        }
        for copy in range(copies)
        for name, caption in CAPTIONS.items()
    ]


def stage2_records(copies: int = 2) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for copy in range(copies):
        for name, caption in CAPTIONS.items():
            records.append(
                {
                    "id": f"chat{copy}_{name}",
                    "image": name,
                    "conversations": [
                        {"from": "human", "value": "<image>\nwhat is in the picture?"},
                        {"from": "gpt", "value": caption},
                        {"from": "human", "value": "how many shapes are there?"},
                        {"from": "gpt", "value": "three"},
                    ],
                }
            )
        records.append(
            {
                "id": f"text{copy}",
                "conversations": [
                    {"from": "human", "value": "what colour is the star?"},
                    {"from": "gpt", "value": "red"},
                ],
            }
        )
        records.append(
            {
                "id": f"multi{copy}",
                "image": ["square.png", "wide.png"],
                "conversations": [
                    {"from": "human", "value": "<image>\n<image>\nhow many shapes are there?"},
                    {"from": "gpt", "value": "three"},
                ],
            }
        )
    return records


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    return path
