"""Exports: the transformers directory reloads offline and generates; the original-LLaVA layout's names."""

from __future__ import annotations

import json

import PIL.Image
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor, CLIPVisionModel

from trainer.llava.assemble import assemble_llava
from trainer.llava.config import ArchitectureConfig
from trainer.llava.export import (
    METADATA_NAME,
    VISION_SUBDIR,
    export_llava_original,
    export_transformers,
    main,
    original_weight_names,
)

torch.set_num_threads(1)
# The names sglang 0.5.23 srt/models/llava.py LlavaBaseForCausalLM.load_weights remaps; every other tensor goes
# to its LlamaForCausalLM.load_weights, which expects plain Llama names.
SGLANG_PROJECTOR_NAMES = ("model.mm_projector.0", "model.mm_projector.2", "model.image_newline")
LLAMA_PREFIXES = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")


@pytest.fixture(scope="module")
def parts(tiny_llava_parts):
    dirs = tiny_llava_parts
    torch.manual_seed(0)
    return dirs, assemble_llava(dirs.vision, dirs.lm, dirs.tokenizer, ArchitectureConfig())


def chat_inputs(processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is it?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.endswith("USER: <image>\nwhat is it? ASSISTANT:")
    return processor(text=prompt, images=[PIL.Image.new("RGB", (64, 40), "blue")], return_tensors="pt")


def test_transformers_export_reloads_offline_and_generates(parts, tmp_path):
    _, llava = parts
    out = export_transformers(llava.model, llava.processor, tmp_path / "final", {"stage": 2})
    assert json.loads((out / METADATA_NAME).read_text()) == {"stage": 2}
    model = AutoModelForImageTextToText.from_pretrained(out, local_files_only=True).eval()
    processor = AutoProcessor.from_pretrained(out, local_files_only=True)
    assert type(model).__name__ == "LlavaNextForConditionalGeneration"
    assert type(processor).__name__ == "LlavaNextProcessor" and processor.num_additional_image_tokens == 1
    original = llava.model.state_dict()
    assert all(torch.equal(value, original[name]) for name, value in model.state_dict().items())
    inputs = chat_inputs(processor)
    with torch.no_grad():
        reloaded = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        in_memory = llava.model.eval().generate(
            **chat_inputs(llava.processor), max_new_tokens=6, do_sample=False
        )
    prompt_length = inputs["input_ids"].shape[1]
    assert reloaded.shape[1] > prompt_length
    assert torch.equal(reloaded, in_memory)


def test_original_layout_names_config_and_tower(parts, tmp_path):
    _, llava = parts
    out = export_llava_original(llava.model, llava.processor, tmp_path / "llava-layout")
    tensors = load_file(str(out / "model.safetensors"))
    assert all(k.startswith(SGLANG_PROJECTOR_NAMES) or k.startswith(LLAMA_PREFIXES) for k in tensors), sorted(
        tensors
    )
    assert {k for k in tensors if k.startswith("model.mm_projector")} == {
        "model.mm_projector.0.weight",
        "model.mm_projector.0.bias",
        "model.mm_projector.2.weight",
        "model.mm_projector.2.bias",
    }
    assert "lm_head.weight" not in tensors  # tied to embed_tokens; sglang's Llama skips it when tied
    state = llava.model.state_dict()
    for old, new in original_weight_names(llava.model).items():
        assert torch.equal(tensors[new], state[old]), new
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlavaLlamaForCausalLM"] and config["model_type"] == "llava"
    assert config["mm_projector_type"] == "mlp2x_gelu" and config["mm_patch_merge_type"] == "spatial_unpad"
    assert config["image_aspect_ratio"] == "anyres" and config["mm_vision_select_layer"] == -2
    assert config["mm_vision_select_feature"] == "patch" and config["mm_hidden_size"] == 32
    # (W, H) pairs, as LLaVA reads them: grids (1,2),(2,1),(2,2),(3,1),(1,3) x 32 px
    assert config["image_grid_pinpoints"] == [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]
    assert config["hidden_size"] == 32 and config["image_token_index"] == 4
    assert (
        config["mm_vision_tower"] == str((out / VISION_SUBDIR).resolve())
        and "clip" in config["mm_vision_tower"]
    )
    tower = CLIPVisionModel.from_pretrained(config["mm_vision_tower"], local_files_only=True).state_dict()
    assert all(torch.equal(v, llava.model.model.vision_tower.state_dict()[k]) for k, v in tower.items())
    assert (out / "tokenizer.json").is_file() and (out / "preprocessor_config.json").is_file()


def test_linear_projector_exports_as_one_linear(parts, tmp_path):
    dirs, _ = parts
    linear = assemble_llava(dirs.vision, dirs.lm, dirs.tokenizer, ArchitectureConfig(projector="linear"))
    out = export_llava_original(linear.model, linear.processor, tmp_path / "linear")
    names = {k for k in load_file(str(out / "model.safetensors")) if "mm_projector" in k}
    assert names == {"model.mm_projector.weight", "model.mm_projector.bias"}
    assert json.loads((out / "config.json").read_text())["mm_projector_type"] == "linear"


def test_export_cli_round_trip(parts, tmp_path, capsys):
    _, llava = parts
    source = export_transformers(llava.model, llava.processor, tmp_path / "src")
    assert main(["--model", str(source), "--out", str(tmp_path / "orig")]) == 0
    assert (tmp_path / "orig" / VISION_SUBDIR / "config.json").is_file()
    assert "exported" in capsys.readouterr().out
