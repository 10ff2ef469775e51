"""The tiny SynthWorld CLIP: open_clip registration, tokenizer + EOS pooling, save/load, and a short training run."""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from trainer.foundation.clip_aux import CONCEPT_GROUPS, IGNORE, CaptionWordHeads, caption_word_targets
from trainer.foundation.clip_data import PoolPair, PoolPairsDataset
from trainer.foundation.clip_sampler import (
    NO_BUCKET,
    BucketBatchSampler,
    batches_forever,
    caption_buckets,
    named_subset_batches,
    plan_batches,
)
from trainer.foundation.clip_schedule import lr_at, param_groups, retrieval_recall_at_1, run_progress
from trainer.foundation.clip_train import ClipTrainConfig, train_clip
from trainer.foundation.tokenizer import save_tokenizer, train_tokenizer
from trainer.foundation.zeroshot import evaluate_task, read_task
from vision_common.open_clip_dir import OpenClipDirError, load_open_clip_dir
from vision_common.tiny_clip import (
    OPEN_CLIP_CONFIG_NAME,
    TinyClipConfig,
    TinyClipLoadError,
    create_tiny_clip,
    register_tiny_clip,
    save_open_clip_dir,
)

logging.getLogger().setLevel(logging.ERROR)  # open_clip warns "initialized randomly" on every create

# Four colours far apart in RGB so a tiny model separates them in a few dozen steps.
TOY_COLORS = {"red": (220, 40, 40), "green": (45, 165, 60), "blue": (40, 80, 220), "yellow": (240, 215, 40)}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [f"{c} {s} icon" for c in (*TOY_COLORS, "pink", "gray") for s in ("star", "circle", "square")] * 5
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_tokenizer(texts, vocab_size=300), out)
    return out


def _toy_image(rgb: tuple[int, int, int], rng: np.random.Generator, size: int = 40) -> Image.Image:
    background = rng.integers(200, 240, size=3)
    pixels = np.tile(background, (size, size, 1)).astype(np.uint8)
    x, y = rng.integers(0, size // 2, size=2)
    pixels[y : y + size // 2, x : x + size // 2] = rgb
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world with a 256-pair pool ("<colour> square") and a 4-way colour task, in SynthWorld's layout."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    (root / "pool" / "images").mkdir(parents=True)
    rows = []
    for i in range(256):
        name = list(TOY_COLORS)[i % 4]
        _toy_image(TOY_COLORS[name], rng).save(root / "pool" / "images" / f"{i:04d}.png")
        rows.append({"key": f"{i:04d}", "image_path": f"images/{i:04d}.png", "caption": f"{name} square"})
    pq.write_table(pa.Table.from_pylist(rows), root / "pool" / "pool.parquet")
    task = root / "tasks" / "colors"
    (task / "images").mkdir(parents=True)
    (task / "classes.txt").write_text("\n".join(TOY_COLORS) + "\n")
    lines = []
    for i in range(32):
        label = i % 4
        _toy_image(list(TOY_COLORS.values())[label], rng).save(task / "images" / f"{i:03d}.png")
        lines.append(
            json.dumps({"image": f"images/{i:03d}.png", "label": label, "class": list(TOY_COLORS)[label]})
        )
    (task / "test.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_config_presets_and_validation() -> None:
    tiny, default = TinyClipConfig.tiny(), TinyClipConfig.default()
    assert (tiny.image_size, tiny.patch_size, tiny.vision_width) == (32, 8, 32)
    assert (default.image_size, default.patch_size, default.vision_head_width) == (64, 8, 64)
    assert TinyClipConfig.from_dict(json.loads(json.dumps(tiny.__dict__))) == tiny
    with pytest.raises(ValueError, match="multiple of patch_size"):
        replace(tiny, image_size=30)
    with pytest.raises(ValueError, match="multiple of vision_head_width"):
        replace(tiny, vision_width=40)
    with pytest.raises(ValueError, match="unknown TinyClipConfig preset"):
        TinyClipConfig.from_preset("huge")
    with pytest.raises(ValueError, match="batch_size"):
        ClipTrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="shape_warmup_fraction"):
        ClipTrainConfig(shape_warmup_fraction=1.0)
    with pytest.raises(ValueError, match="aux_weight"):
        ClipTrainConfig(shape_warmup_fraction=0.2, aux_weight=0.0)
    with pytest.raises(ValueError, match="patch_sign_weight must be >= 0"):
        ClipTrainConfig(patch_sign_weight=-1.0)
    assert ClipTrainConfig.default().patch_sign_weight == 0.0  # the committed CLIP was built without them


def test_registered_name_gives_open_clip_model_and_hf_tokenizer(tokenizer_dir: Path, tmp_path: Path) -> None:
    cfg = TinyClipConfig.tiny()
    name = register_tiny_clip(cfg, tokenizer_dir, registry_dir=tmp_path)
    assert name == register_tiny_clip(cfg, tokenizer_dir, registry_dir=tmp_path)  # content-addressed
    assert name in open_clip.list_models()
    model = open_clip.create_model(name)
    assert type(model) is open_clip.CLIP  # the standard class a REACT trainer can insert gated blocks into
    assert model.text_pool_type == "eos" and model.text_eos_id == 2  # </s>, not open_clip's argmax default
    tokenizer = open_clip.get_tokenizer(name)
    assert isinstance(tokenizer, open_clip.tokenizer.HFTokenizer)
    ids = tokenizer(["red star", "blue circle icon " * 20])  # the second is longer than the context
    assert ids.shape == (2, cfg.context_length)
    first = ids[0].tolist()
    assert first[0] == 1 and 2 in first  # <s> ... </s>
    eos = first.index(2)
    assert all(t == 0 for t in first[eos + 1 :]) and all(t > 4 for t in first[1:eos])
    # Truncation keeps the template: a long caption still ends in </s>, so EOS pooling never falls back to 0.
    assert ids[1, 0].item() == 1 and ids[1, -1].item() == 2 and (ids[1] == 2).sum().item() == 1


def test_eos_pooling_reads_the_eos_position(tokenizer_dir: Path) -> None:
    torch.manual_seed(0)
    model, _, _, tokenizer = create_tiny_clip(TinyClipConfig.tiny(), tokenizer_dir, seed=0)
    model.eval()
    ids = tokenizer(["red star", "green square icon"])
    eos_positions = (ids == 2).int().argmax(dim=1)
    with torch.no_grad():
        features = model.encode_text(ids)
        # Tokens after </s> are invisible to it under the causal mask: changing them must change nothing.
        scrambled = ids.clone()
        for row, pos in enumerate(eos_positions.tolist()):
            scrambled[row, pos + 1 :] = torch.randint(5, 50, (ids.shape[1] - pos - 1,))
        assert torch.allclose(model.encode_text(scrambled), features, atol=1e-6)
        # ...while a caption token before it does change the embedding.
        edited = ids.clone()
        edited[:, 1] = 7
        assert not torch.allclose(model.encode_text(edited), features, atol=1e-3)
        # And the feature is ln_final(token state at </s>) @ text_projection, computed by hand.
        x = model.token_embedding(ids) + model.positional_embedding
        x = model.transformer(x, attn_mask=model.attn_mask)
        x = model.ln_final(x)
        manual = x[torch.arange(2), eos_positions] @ model.text_projection
    assert torch.allclose(manual, features, atol=1e-5)


def test_save_load_roundtrip_is_exact_and_relocatable(tokenizer_dir: Path, tmp_path: Path) -> None:
    cfg = TinyClipConfig.tiny()
    model, _, val_transform, tokenizer = create_tiny_clip(cfg, tokenizer_dir, seed=1)
    model.eval()
    saved = save_open_clip_dir(model, cfg, tmp_path / "clip", tokenizer_dir=tokenizer_dir)
    config = json.loads((saved / OPEN_CLIP_CONFIG_NAME).read_text())
    assert set(config) >= {"model_cfg", "preprocess_cfg"}
    assert config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] == "."
    assert config["preprocess_cfg"]["size"] == 32
    assert set(load_file(str(saved / "open_clip_model.safetensors"))) == set(model.state_dict())
    moved = tmp_path / "elsewhere" / "clip"
    shutil.move(str(saved), moved)  # the tokenizer path must resolve relative to the directory
    loaded, preprocess, loaded_tokenizer = load_open_clip_dir(moved)
    texts = ["red star", "blue circle icon"]
    image = Image.new("RGB", (48, 40), (200, 30, 30))
    pixels = val_transform(image)[None]
    assert torch.equal(preprocess(image)[None], pixels)
    assert torch.equal(loaded_tokenizer(texts), tokenizer(texts))
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(pixels), model.encode_image(pixels))
        assert torch.equal(loaded.encode_text(tokenizer(texts)), model.encode_text(tokenizer(texts)))
        # open_clip's own local-dir loader reads the same directory (weights + tokenizer in it).
        native, _, _ = open_clip.create_model_and_transforms(f"local-dir:{moved}")
        native_tokenizer = open_clip.get_tokenizer(f"local-dir:{moved}")
        assert torch.equal(native_tokenizer(texts), tokenizer(texts))
        assert torch.allclose(native.eval().encode_image(pixels), model.encode_image(pixels), atol=1e-6)


def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(OpenClipDirError, match="open_clip_config.json not found"):
        load_open_clip_dir(tmp_path)
    (tmp_path / OPEN_CLIP_CONFIG_NAME).write_text('{"model_cfg": {"embed_dim": 8}}')
    with pytest.raises(OpenClipDirError, match="embed_dim, vision_cfg and text_cfg"):
        load_open_clip_dir(tmp_path)
    with pytest.raises(TinyClipLoadError, match="no tokenizer.json"):
        register_tiny_clip(TinyClipConfig.tiny(), tmp_path / "missing")


def test_schedule_and_recall_are_hand_computable() -> None:
    assert lr_at(0, 0.0, base_lr=1.0, warmup_steps=4, min_lr_ratio=0.1) == pytest.approx(0.25)
    assert lr_at(3, 0.0, base_lr=1.0, warmup_steps=4, min_lr_ratio=0.1) == pytest.approx(1.0)
    assert lr_at(10, 0.5, base_lr=1.0, warmup_steps=4, min_lr_ratio=0.1) == pytest.approx(0.55)
    assert lr_at(10, 1.0, base_lr=1.0, warmup_steps=4, min_lr_ratio=0.1) == pytest.approx(0.1)
    assert run_progress(5, 10, elapsed_s=1.0, budget_s=100.0) == pytest.approx(0.5)
    assert run_progress(5, None, elapsed_s=30.0, budget_s=60.0) == pytest.approx(0.5)
    # cos(img1, txt1)=0.745 < cos(img1, txt2)=0.8 and cos(txt1, img0)=0.981: pair 1 is missed both ways.
    image = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0]])
    recall = retrieval_recall_at_1(image, text)
    assert recall["image_to_text_r1"] == pytest.approx(2 / 3)
    assert recall["text_to_image_r1"] == pytest.approx(2 / 3)
    model = open_clip.CLIP(embed_dim=8, vision_cfg={"width": 16, "head_width": 8, "layers": 1, "patch_size": 8, "image_size": 16},
                           text_cfg={"width": 16, "heads": 2, "layers": 1, "vocab_size": 10, "context_length": 4})  # fmt: skip
    groups = param_groups(model, 0.1, text_lr_scale=0.25)
    names = {id(p): n for n, p in model.named_parameters()}
    by_name = {names[id(p)]: (g["weight_decay"], g["lr_scale"]) for g in groups for p in g["params"]}
    assert len(by_name) == len(list(model.parameters()))  # every parameter in exactly one group
    assert by_name["logit_scale"] == (0.0, 1.0) and by_name["visual.ln_pre.weight"] == (0.0, 1.0)
    assert by_name["visual.conv1.weight"] == (0.1, 1.0)
    assert by_name["token_embedding.weight"] == (0.1, 0.25) and by_name["ln_final.bias"] == (0.0, 0.25)


@pytest.mark.slow  # a DataLoader worker process
def test_short_training_learns_colours_and_is_deterministic(
    tokenizer_dir: Path, toy_world: Path, tmp_path: Path
) -> None:
    cfg = replace(
        ClipTrainConfig.tiny(),
        max_steps=40,
        max_minutes=2.0,
        lr=3e-3,
        warmup_steps=5,
        num_workers=1,
        torch_threads=1,
        # The toy pool has only four distinct captions: a single-colour batch would hold identical captions.
        same_color_batch_fraction=0.0,
        shape_warmup_fraction=0.0,  # contrastive from step 1 (the warm-up has its own test)
    )
    metrics = train_clip(toy_world, tokenizer_dir, tmp_path / "a", cfg, progress_bar=False)
    assert metrics["steps"] == 40 and metrics["samples_seen"] == 40 * cfg.batch_size
    assert metrics["params"]["total"] == sum(metrics["params"][k] for k in ("visual", "text"))
    first, last = metrics["history"][0]["clip_loss"], metrics["final_clip_loss_ema"]
    assert first == pytest.approx(math.log(cfg.batch_size), rel=0.15)  # chance level at step 1
    assert last < 0.7 * first
    # The caption-word heads learn too: colour is named in every toy caption (shape "square" too).
    assert metrics["history"][-1]["aux_loss"] < 0.5 * metrics["history"][0]["aux_loss"]
    first_step = metrics["history"][0]
    assert first_step["loss"] == pytest.approx(
        first + cfg.aux_weight * first_step["aux_loss"] + cfg.patch_aux_weight * first_step["patch_aux_loss"],
        abs=1e-3,
    )
    # The patch-level heads learn the caption words as well.
    assert metrics["history"][-1]["patch_aux_loss"] < 0.5 * first_step["patch_aux_loss"]
    model, preprocess, tokenizer = load_open_clip_dir(tmp_path / "a")
    task = read_task(toy_world / "tasks" / "colors")
    result = evaluate_task(model, preprocess, tokenizer, task, templates=["{}", "{} square"])
    assert result.chance == 0.25
    assert result.top1 >= 0.75, result
    # Same seed, same data, same steps: bit-identical weights (workers seeded from the loader generator).
    train_clip(toy_world, tokenizer_dir, tmp_path / "b", cfg, progress_bar=False)
    a = load_file(str(tmp_path / "a" / "open_clip_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "open_clip_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_caption_buckets_and_single_colour_batches() -> None:
    captions = ["Red star", "red ring icon", "blue star", "star", "green blue square", "image"]
    assert caption_buckets(captions, ("red", "green", "blue")) == [0, 0, 2, NO_BUCKET, 1, NO_BUCKET]
    buckets = [0] * 4 + [1] * 4 + [NO_BUCKET] * 4
    for fraction, expected_pure in ((1.0, 4), (0.5, 2)):
        plan = plan_batches(buckets, 2, fraction, torch.Generator().manual_seed(0))
        assert sorted(i for batch in plan for i in batch) == list(range(12))  # every item exactly once
        pure = [b for b in plan if buckets[b[0]] != NO_BUCKET and len({buckets[i] for i in b}) == 1]
        assert len(pure) >= expected_pure  # mixed batches may be single-colour by chance, never fewer
    # Uncoloured captions never form forced batches: with fraction 0 every batch comes from one shuffled pool.
    plan = plan_batches(buckets, 3, 0.0, torch.Generator().manual_seed(1))
    assert len(plan) == 4 and plan == plan_batches(buckets, 3, 0.0, torch.Generator().manual_seed(1))
    sampler = BucketBatchSampler(buckets, 4, 1.0, seed=0)
    assert len(sampler) == len(list(sampler)) == 3
    assert all(len({buckets[i] for i in batch}) == 1 for batch in sampler)


def test_caption_word_targets_and_heads_ignore_unnamed_groups() -> None:
    groups = {"shape": ("star", "ring"), "color": ("red", "blue")}
    targets = caption_word_targets(["Ring and red star", "blue shape icon", "stock vector"], groups)
    assert targets.tolist() == [[1, 0], [IGNORE, 1], [IGNORE, IGNORE]]  # first mention wins
    heads = CaptionWordHeads(embed_dim=3, groups=groups)
    with torch.no_grad():
        heads.linear.weight.zero_()
        heads.linear.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))
    features = torch.zeros(3, 3)
    # shape: only row 0 counts (target ring, logits [2, 0]) -> CE = log(1 + e^2) - 0; colour: rows 0 and 1, uniform.
    expected = math.log(1 + math.exp(2.0)) + math.log(2.0)
    assert heads.loss(features, targets).item() == pytest.approx(expected, rel=1e-5)
    assert heads.loss(features, targets[2:]).item() == 0.0  # nothing named: no signal, not a penalty


def test_shape_warmup_reads_only_shape_named_pairs() -> None:
    captions = ["red star", "blue shape", "ring icon", "IMG_1234", "star and ring", "green square"]
    pairs = [PoolPair(str(i), Path(f"{i}.png"), c) for i, c in enumerate(captions)]
    dataset = PoolPairsDataset(pairs, torch.arange(12).view(6, 2), transform=lambda image: image)
    targets = caption_word_targets(captions, CONCEPT_GROUPS)
    column = list(CONCEPT_GROUPS).index("shape")
    kwargs = {"batch_size": 2, "num_workers": 0, "seed": 0, "where": "pool.parquet"}
    batches, rows = named_subset_batches(dataset, targets, column, **kwargs)
    subset_targets = targets[rows]
    shapes = CONCEPT_GROUPS["shape"]
    # Pairs 0, 2, 4, 5 name a shape (first mention: star, ring, star, square); 1 and 3 do not.
    assert [shapes[i] for i in subset_targets[:, column].tolist()] == ["star", "ring", "star", "square"]
    assert rows.tolist() == [0, 2, 4, 5]
    with pytest.raises(ValueError, match="pool.parquet: only 4 captions name a word of the group"):
        named_subset_batches(dataset, targets, column, **{**kwargs, "batch_size": 5})
    forever = batches_forever([1, 2])
    assert [next(forever) for _ in range(5)] == [1, 2, 1, 2, 1]


def test_shape_warmup_trains_the_image_tower_alone_then_switches_to_clip(
    tokenizer_dir: Path, toy_world: Path, tmp_path: Path
) -> None:
    cfg = replace(
        ClipTrainConfig.tiny(),
        max_steps=6,
        max_minutes=2.0,
        num_workers=0,
        torch_threads=1,
        val_count=0,
        log_every=1,
        same_color_batch_fraction=0.0,
        shape_warmup_fraction=0.5,
    )
    metrics = train_clip(toy_world, tokenizer_dir, tmp_path / "half", cfg, progress_bar=False)
    # Progress is step / 6: steps 0-2 (progress < 0.5) warm up, steps 3-5 are contrastive.
    assert metrics["shape_warmup_steps"] == 3 and metrics["steps"] == 6
    assert [h["phase"] for h in metrics["history"]] == ["shape_warmup"] * 3 + ["clip"] * 3
    assert all(h["clip_loss"] == 0.0 for h in metrics["history"][:3])
    assert metrics["history"][3]["clip_loss"] == pytest.approx(math.log(cfg.batch_size), rel=0.15)
    # Warm-up only: the text tower and the temperature keep their initial weights, the image tower moves.
    only = replace(cfg, max_steps=4, shape_warmup_fraction=0.9)
    train_clip(toy_world, tokenizer_dir, tmp_path / "warm", only, progress_bar=False)
    trained = load_file(str(tmp_path / "warm" / "open_clip_model.safetensors"))
    initial, *_ = create_tiny_clip(TinyClipConfig.tiny(), tokenizer_dir, seed=cfg.seed)
    start = {k: v.detach() for k, v in initial.state_dict().items()}
    text_keys = [k for k in start if not k.startswith("visual.")]
    assert "logit_scale" in text_keys and "token_embedding.weight" in text_keys
    assert all(torch.equal(trained[k], start[k]) for k in text_keys)
    assert not torch.equal(trained["visual.conv1.weight"], start["visual.conv1.weight"])
