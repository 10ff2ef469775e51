"""The CUDA paths, on a GPU machine only (skipped elsewhere; CI has no GPU).

Run on a lent GPU with ``python -m pytest tests/trainer/llava/test_cuda_paths.py -s`` (docs/llava_trainer.md, "CUDA").
What they pin down, each something a CPU run cannot:

* the trainer CLI on CUDA: ``precision=auto`` resolves to bf16 autocast, stage 1 -> stage 2 keeps the tower
  bit-identical, a stopped run resumes (the CUDA RNG state goes through the checkpoint), the export reloads;
* real LLaVA-NeXT shapes (CLIP ViT-L/14-336 tower, Vicuna-7B-wide decoder layers, AnyRes 2x2 tiles) through
  the trainer's own dataset, collator, stage freezing and accelerator: image-token counts match the formula,
  the bf16 loss tracks the fp32 loss, only projector + LM get gradients, and an optimiser step is timed;
* the in-process chat backend on CUDA picks bfloat16 and its greedy answer starts with the same word as the fp32 CPU model's.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from PIL import Image, ImageDraw

from tests.support.llava_fixtures import (
    stage1_records,
    stage2_records,
    tiny_tokenizer,
    write_json,
    write_parts,
)
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

EMBEDDED = REPO_ROOT / "assets" / "models" / "synthworld-llava-next"
DEVICE = "cuda"
# CLIP ViT-L/14-336 (LLaVA-1.5/NeXT's tower) and the decoder-layer shapes of Vicuna-7B (only 2 layers deep).
VISION_SHAPES = dict(
    image_size=336, patch_size=14, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
    num_attention_heads=16, projection_dim=768, hidden_act="quick_gelu",
)  # fmt: skip
TEXT_SHAPES = dict(
    vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32,
    max_position_embeddings=4096,
)  # fmt: skip


def test_trainer_cli_trains_both_stages_in_bf16_on_cuda_and_resumes(tmp_path):
    from safetensors.torch import load_file

    from trainer.llava.train import main
    from trainer.runtime.loop import METRICS_NAME
    from trainer.runtime.metrics import read_metrics

    parts = write_parts(tmp_path)
    s1 = write_json(tmp_path / "s1.json", stage1_records())
    s2 = write_json(tmp_path / "s2.json", stage2_records())
    common = ["--config", "tiny", "--images", str(parts.images), "--no-progress"]
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    stage1 = [*common, "--stage", "1", "--data", str(s1), "--out", str(run1)]
    stage1 += ["--vision-tower", str(parts.vision), "--language-model", str(parts.lm)]
    stage1 += ["--tokenizer", str(parts.tokenizer)]
    # Stop after 2 updates, then resume: the checkpoint must carry the CUDA RNG state and optimiser.
    assert main([*stage1, "--stop-after-steps", "2"]) == 0
    assert main([*stage1, "--resume"]) == 0
    stage2 = [*common, "--stage", "2", "--data", str(s2), "--out", str(run2), "--init", str(run1 / "final")]
    assert main(stage2) == 0

    from trainer.runtime.config import RuntimeConfig
    from trainer.runtime.loop import resolve_mixed_precision

    assert resolve_mixed_precision(RuntimeConfig()) == "bf16"
    for run in (run1, run2):
        losses = [record["loss"] for record in read_metrics(run / METRICS_NAME)]
        assert losses and all(math.isfinite(x) for x in losses), (run, losses)
    one, two = (
        load_file(run1 / "final" / "model.safetensors"),
        load_file(run2 / "final" / "model.safetensors"),
    )
    tower = [k for k in one if k.startswith("vision_tower.")]
    assert tower and all(torch.equal(one[k], two[k]) for k in tower)
    assert any(not torch.equal(one[k], two[k]) for k in one if k.startswith("language_model."))
    assert any(not torch.equal(one[k], two[k]) for k in one if k.startswith("multi_modal_projector."))

    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(run2 / "final", dtype=torch.bfloat16).to(DEVICE)
    processor = AutoProcessor.from_pretrained(run2 / "final")
    prompt = "USER: <image>\nwhat is in the picture? ASSISTANT:"
    inputs = processor(images=Image.open(parts.images / "big.png"), text=prompt, return_tensors="pt")
    inputs = inputs.to(DEVICE)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def _real_size_parts(tokenizer, layers: int):
    """A LLaVA-NeXT with real shapes and random weights: CLIP ViT-L/14-336 and Vicuna-7B-wide layers."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextForConditionalGeneration

    from trainer.llava.assemble import LlavaParts, anyres_for_tower, build_llava_config, build_processor
    from trainer.llava.config import ArchitectureConfig
    from vision_common.anyres.pixels import CLIP_MEAN, CLIP_STD

    vision = CLIPVisionConfig(**VISION_SHAPES)
    text = LlamaConfig(
        **TEXT_SHAPES,
        num_hidden_layers=layers,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    arch = ArchitectureConfig()  # mlp2x_gelu, LLaVA-1.6 grids, feature layer -2
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(build_llava_config(vision, text, arch, image_token_id))
    processor = build_processor(tokenizer, anyres_for_tower(vision, arch), CLIP_MEAN, CLIP_STD)
    return LlavaParts(model=model, processor=processor)


def _scene(size: tuple[int, int], seed: int) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    image = Image.new("RGB", size, (200, 200, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = (int(v) for v in torch.randint(0, min(size) - 40, (2,), generator=gen))
        colour = tuple(int(v) for v in torch.randint(0, 256, (3,), generator=gen))
        draw.ellipse((x, y, x + 40, y + 40), fill=colour)
    return image


def test_real_size_llava_next_trains_a_bf16_step_on_cuda(tmp_path):
    from dataclasses import replace

    from trainer.llava.config import stage_preset
    from trainer.llava.stages import compute_loss, set_train_mode
    from trainer.llava.train import build_job, dataset_for
    from trainer.runtime.loop import make_accelerator
    from vision_common.anyres.geometry import AnyResConfig, num_image_tokens

    tokenizer = tiny_tokenizer()
    parts = _real_size_parts(tokenizer, layers=2)
    sizes = {"square.png": (672, 672), "wide.png": (1000, 600)}
    (tmp_path / "images").mkdir()
    for seed, (name, size) in enumerate(sizes.items()):
        _scene(size, seed).save(tmp_path / "images" / name)
    records = [
        {
            "id": name,
            "image": name,
            "conversations": [
                {"from": "human", "value": "<image>\nwhat is in the picture?"},
                {"from": "gpt", "value": "a green striped square and a pink ring."},
            ],
        }
        for name in sizes
    ]
    data = write_json(tmp_path / "data.json", records)
    cfg = stage_preset("llava_next_7b", 2)
    cfg = replace(cfg, template="vicuna_v1", micro_batch_size=2, max_length=4096)
    dataset, report = dataset_for(parts, data, tmp_path / "images", cfg)
    assert report.samples == 2

    # Image tokens per sample: the AnyRes formula at real shapes (672x672 -> 2x2 tiles -> 2928 tokens).
    real = AnyResConfig.llava_1_6()
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    for index, size in enumerate(sizes.values()):
        counted = int((dataset[index]["input_ids"] == image_token_id).sum())
        assert counted == num_image_tokens(size, real), (size, counted)
    assert num_image_tokens((672, 672), real) == 2928

    job = build_job(parts, dataset, cfg, {"check": "cuda"})  # also freezes for stage 2 (configure_stage)
    accelerator = make_accelerator(cfg.runtime)
    assert accelerator.mixed_precision == "bf16"
    model = parts.model.to(accelerator.device)
    batch = {k: v.to(accelerator.device) for k, v in job.collate([dataset[0], dataset[1]]).items()}

    with torch.no_grad():
        fp32 = float(compute_loss(model, batch).loss)
        with accelerator.autocast():
            bf16 = float(compute_loss(model, batch).loss)
    print(f"\nreal-size loss fp32 {fp32:.4f} bf16-autocast {bf16:.4f}")
    assert math.isfinite(bf16) and abs(bf16 - fp32) / fp32 < 0.02

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    model, optimizer = accelerator.prepare(model, optimizer)
    tower_before = {
        k: v.clone() for k, v in accelerator.unwrap_model(model).model.vision_tower.state_dict().items()
    }
    set_train_mode(model)
    torch.cuda.reset_peak_memory_stats()
    timings = []
    for _ in range(4):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with accelerator.autocast():
            loss = compute_loss(model, batch).loss
        accelerator.backward(loss)
        inner = accelerator.unwrap_model(model)
        assert all(p.grad is None for p in inner.model.vision_tower.parameters())
        assert inner.model.multi_modal_projector.linear_1.weight.grad.abs().sum() > 0
        assert inner.model.language_model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    tower_after = accelerator.unwrap_model(model).model.vision_tower.state_dict()
    assert all(torch.equal(tower_before[k], tower_after[k]) for k in tower_before)
    tokens = int(batch["attention_mask"].sum())
    step = min(timings[1:])
    print(
        f"real-size step: {tokens} tokens in {step * 1e3:.0f} ms ({tokens / step:.0f} tokens/s), "
        f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, {torch.cuda.get_device_name()}"
    )


@pytest.mark.skipif(not (EMBEDDED / "model.safetensors").is_file(), reason="embedded model not present")
def test_local_backend_serves_the_embedded_model_in_bf16_on_cuda():
    from llava_demo.backends.base import SamplingParams
    from llava_demo.backends.local import LocalBackend, LocalBackendConfig
    from vision_common.chat.conversation import Conversation

    examples = REPO_ROOT / "assets" / "synthworld" / "examples"
    image = Image.open(examples / "scene_0.png").convert("RGB")
    gpu = LocalBackend.load(str(EMBEDDED), LocalBackendConfig(device=DEVICE, local_files_only=True))
    cpu = LocalBackend.load(str(EMBEDDED), LocalBackendConfig(device="cpu", local_files_only=True))
    try:
        health = gpu.health()
        assert health["device"].startswith(DEVICE) and health["dtype"] == "bfloat16"
        conversation = Conversation().with_user(
            "What shapes are in the image? Answer with one word.", images=[image]
        )
        params = SamplingParams(temperature=0.0, max_new_tokens=8)
        answers = []
        for backend in (gpu, cpu):
            text = "".join(e.text for e in backend.stream(conversation, params) if e.kind == "delta")
            answers.append(text)
        print(f"\nembedded answer cuda/bf16 {answers[0]!r} cpu/fp32 {answers[1]!r}")
        assert answers[0].strip() and answers[0].split()[0] == answers[1].split()[0]
    finally:
        gpu.close()
        cpu.close()


def test_image_use_on_cuda_matches_the_cpu_losses(tmp_path, tiny_llava_dir):
    """``trainer.probes.image_use --device cuda`` (float32) measures the same answer losses as the CPU run: the
    blank and swapped pixels are built on the host and moved with the batch, so the gaps must agree."""
    from tests.support.llava_fixtures import write_images
    from trainer.probes.image_use import measure_image_use

    write_images(tmp_path / "images")
    data = write_json(tmp_path / "data.json", stage2_records(copies=1))
    model_dir = tiny_llava_dir
    runs = {
        device: measure_image_use(
            model_dir, data, tmp_path / "images", records=6, batch_size=4, device=device
        )
        for device in ("cpu", DEVICE)
    }
    cpu, gpu = runs["cpu"], runs[DEVICE]
    print(f"\nimage use cpu {cpu.to_json()}\nimage use cuda {gpu.to_json()}")
    assert gpu.records == cpu.records and gpu.supervised_tokens == cpu.supervised_tokens
    for name in ("loss_right", "loss_blank", "loss_other"):
        assert getattr(gpu, name) == pytest.approx(getattr(cpu, name), abs=2e-4), name
    assert gpu.gap_blank == pytest.approx(cpu.gap_blank, abs=2e-4)
