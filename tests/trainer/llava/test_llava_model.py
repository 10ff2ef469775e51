"""Model assembly (exact weights, config, processor) and what one stage-1 / stage-2 update changes."""

from __future__ import annotations

from dataclasses import replace

import PIL.Image
import pytest
import torch
from transformers import AutoModelForCausalLM, CLIPVisionModel

from tests.support.llava_fixtures import stage1_records, stage2_records, write_json
from trainer.llava.assemble import anyres_of, assemble_llava, pixel_config_of
from trainer.llava.config import ArchitectureConfig, stage_preset
from trainer.llava.data import load_dataset
from trainer.llava.stages import compute_loss, configure_stage
from trainer.llava.train import build_job
from trainer.runtime.loop import run_training

torch.set_num_threads(1)


def assemble(tiny_llava_parts, **arch):
    torch.manual_seed(0)
    return assemble_llava(
        tiny_llava_parts.vision, tiny_llava_parts.lm, tiny_llava_parts.tokenizer, ArchitectureConfig(**arch)
    )


def test_assembled_weights_are_bit_identical_to_the_parts(tiny_llava_parts):
    llava = assemble(tiny_llava_parts).model
    vision = CLIPVisionModel.from_pretrained(tiny_llava_parts.vision, local_files_only=True).state_dict()
    assembled_vision = llava.model.vision_tower.state_dict()
    assert vision.keys() == assembled_vision.keys()
    assert all(torch.equal(vision[k], assembled_vision[k]) for k in vision)
    lm = AutoModelForCausalLM.from_pretrained(tiny_llava_parts.lm, local_files_only=True).state_dict()
    assembled_lm = llava.model.language_model.state_dict()
    for name, value in lm.items():
        target = (
            llava.lm_head.weight if name == "lm_head.weight" else assembled_lm[name.removeprefix("model.")]
        )
        assert torch.equal(value, target), name
    # the tiny Llama ties its head to its embeddings; so does the assembled model
    assert llava.lm_head.weight is llava.model.language_model.embed_tokens.weight


def test_assembled_config_and_processor(tiny_llava_parts):
    parts = assemble(tiny_llava_parts)
    config, processor = parts.model.config, parts.processor
    assert config.image_token_id == 4 == processor.tokenizer.convert_tokens_to_ids("<image>")
    # LLaVA-1.6 grids (cols, rows) (1,2),(2,1),(2,2),(3,1),(1,3) at tile 32, stored [height, width]
    assert config.image_grid_pinpoints == [[64, 32], [32, 64], [64, 64], [32, 96], [96, 32]]
    assert (config.vision_feature_layer, config.vision_feature_select_strategy) == (-2, "default")
    assert config.projector_hidden_act == "gelu" and config.tie_word_embeddings
    newline = parts.model.model.image_newline
    assert newline.shape == (32,) and 0.3 < newline.norm().item() < 1.7  # randn/sqrt(32): E|v|^2 = 1
    image_processor = processor.image_processor
    assert list(image_processor.image_mean) == [0.5, 0.4, 0.3] and list(image_processor.image_std) == [
        0.25,
        0.2,
        0.3,
    ]
    assert (
        image_processor.crop_size["height"] == 32
        and image_processor.image_grid_pinpoints == config.image_grid_pinpoints
    )
    assert (processor.patch_size, processor.num_additional_image_tokens) == (8, 1)
    assert processor.vision_feature_select_strategy == "default"
    assert (
        processor.chat_template == processor.tokenizer.chat_template
        and "ASSISTANT" in processor.chat_template
    )
    # The processor's placeholder count matches the model's features (a mismatch raises in forward).
    inputs = processor(
        text="USER: <image>\nwhat? ASSISTANT:",
        images=[PIL.Image.new("RGB", (100, 50), "red")],
        return_tensors="pt",
    )
    assert int((inputs["input_ids"] == 4).sum()) == 52  # serving.md §7 table: 100x50 -> 52 tokens
    with torch.no_grad():
        logits = parts.model(**inputs).logits
    assert torch.isfinite(logits).all()


def test_linear_projector_is_linear_1_with_a_frozen_identity(tiny_llava_parts):
    parts = assemble(tiny_llava_parts, projector="linear")
    projector = parts.model.model.multi_modal_projector
    assert parts.model.config.projector_hidden_act == "linear"
    assert torch.equal(projector.linear_2.weight, torch.eye(32)) and not projector.linear_2.bias.any()
    configure_stage(parts.model, stage_preset("tiny", 1))
    assert projector.linear_1.weight.requires_grad and not projector.linear_2.weight.requires_grad
    x = torch.randn(3, 32)
    assert torch.allclose(projector(x), projector.linear_1(x))


def snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def one_update(tiny_llava_parts, tmp_path, stage, **stage_changes):
    parts = assemble(tiny_llava_parts)
    cfg = replace(stage_preset("tiny", stage), **stage_changes).with_runtime(max_steps=1, checkpoint_every=0)
    records = stage1_records(1) if stage == 1 else stage2_records(1)
    dataset, _ = load_dataset(
        write_json(tmp_path / "data.json", records),
        tiny_llava_parts.images,
        parts.processor.tokenizer,
        template=cfg.template,
        anyres=anyres_of(parts.model),
        pixels=pixel_config_of(parts.processor),
        image_token_id=4,
        max_length=cfg.max_length,
    )
    before = snapshot(parts.model)
    job = build_job(parts, dataset, cfg, {})
    modes = []

    def spying_loss(model, batch):
        modes.append((model.model.vision_tower.training, model.model.language_model.training))
        assert "pixel_values" in batch or stage == 2
        return compute_loss(model, batch)

    job.compute_loss = spying_loss
    result = run_training(job, cfg.runtime, tmp_path / "run", progress=False)
    assert result.finished and result.step == 1
    tower_trains = bool(stage_changes.get("tune_vision"))
    assert modes and all(m == (tower_trains, True) for m in modes)  # a frozen tower stays in eval mode
    after = snapshot(parts.model)
    return {name: not torch.equal(before[name], after[name]) for name in before}


def test_stage1_update_changes_only_projector_and_newline(tiny_llava_parts, tmp_path):
    changed = one_update(tiny_llava_parts, tmp_path, stage=1)
    projector = {n for n in changed if n.startswith("model.multi_modal_projector.")} | {"model.image_newline"}
    assert len(projector) == 5
    assert all(changed[n] for n in projector)
    assert not any(changed[n] for n in changed if n not in projector)  # vision tower and LM bit-identical


def test_stage2_update_changes_projector_and_llm_not_vision(tiny_llava_parts, tmp_path):
    changed = one_update(tiny_llava_parts, tmp_path, stage=2)
    vision = [n for n in changed if n.startswith("model.vision_tower.")]
    language = [n for n in changed if n.startswith("model.language_model.")]
    projector = [n for n in changed if n.startswith("model.multi_modal_projector.")] + ["model.image_newline"]
    assert vision and not any(changed[n] for n in vision)
    assert all(changed[n] for n in projector)
    assert language and all(changed[n] for n in language)  # every block, the norm and the (tied) embeddings


def test_tune_vision_trains_the_tower_in_stage_2_at_its_own_learning_rate(tiny_llava_parts, tmp_path):
    changed = one_update(tiny_llava_parts, tmp_path, stage=2, tune_vision=True, vision_lr=1e-4)
    vision = [n for n in changed if n.startswith("model.vision_tower.")]
    # Every tower weight that reaches the selected feature layer moves; the layers after it get no gradient.
    assert sum(changed[n] for n in vision) > len(vision) // 2
    parts = assemble(tiny_llava_parts)
    cfg = replace(stage_preset("tiny", 2), tune_vision=True, vision_lr=1e-4)
    groups = {g.name: g for g in configure_stage(parts.model, cfg)}
    assert groups["vision_tower"].lr_scale == pytest.approx(1e-4 / cfg.runtime.learning_rate)
    assert all(p.requires_grad for p in parts.model.model.vision_tower.parameters())


def test_a_tokenizer_without_image_token_gets_one_and_the_lm_grows(tmp_path, tiny_llava_parts):
    """A plain LM tokenizer (no <image>, no pad): <image> is added as one special token, pad falls back to
    unk (LLaVA v1), and the LM's embedding matrix grows to the new vocabulary before the weights are copied."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from trainer.llava.assemble import load_tokenizer

    vocab = {"<unk>": 0, "</s>": 1, "a": 2, "red": 3, "star": 4, "?": 5}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="</s>")
    tokenizer.save_pretrained(tmp_path / "lm")
    torch.manual_seed(1)
    lm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=6, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
        )
    )
    lm.save_pretrained(tmp_path / "lm")
    vision = tiny_llava_parts.vision
    assert load_tokenizer(tmp_path / "lm").convert_tokens_to_ids("<image>") == 0  # unknown before
    parts = assemble_llava(vision, tmp_path / "lm", None, ArchitectureConfig())
    tok = parts.processor.tokenizer
    assert parts.model.config.image_token_id == tok.convert_tokens_to_ids("<image>") == 6
    assert tok("a <image> star", add_special_tokens=False)["input_ids"] == [2, 6, 4]
    assert tok.pad_token == "<unk>"
    embeddings = parts.model.model.language_model.embed_tokens.weight
    assert embeddings.shape == (7, 16) and torch.equal(embeddings[:6], lm.model.embed_tokens.weight)
    assert torch.equal(parts.model.lm_head.weight[:6], lm.lm_head.weight)
