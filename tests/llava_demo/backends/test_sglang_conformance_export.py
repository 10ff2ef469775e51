"""SGLang conformance, export side: the original-LLaVA export (``trainer.llava.export``) checked against the
pinned SGLang's model code, read as source from the cache folder (its model modules need GPU kernels to
import, so nothing there is run):

- ``config.json``'s architecture is in ``srt/models/llava.py``'s ``EntryClass`` (what SGLang registers), and
  every config field ``LlavaBaseForCausalLM.load_weights`` and ``LlavaLlamaForCausalLM.__init__`` read
  directly is present;
- every tensor name in ``model.safetensors`` lands on a parameter: projector, vision and newline names
  through ``load_weights``' own ``projector_weights`` table onto the parameters of the projector SGLang builds
  (transformers' ``LlavaMultiModalProjector`` from the exported config, shapes compared), the rest through
  ``LlamaForCausalLM._legacy_load_weights``' ``stacked_params_mapping`` onto the module attributes
  ``srt/models/llama.py`` defines;
- the vision tower folder is picked the way SGLang picks it (a substring of ``mm_vision_tower``);
- a ``linear`` projector export is, as docs/llava_trainer.md says, for the original LLaVA code only: SGLang
  has no parameter for ``model.mm_projector.weight``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig
from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

from tests.support.llava_fixtures import write_parts
from tests.support.sglang_conformance import sglang_env_or_skip
from trainer.llava.assemble import assemble_llava, load_llava
from trainer.llava.config import ArchitectureConfig
from trainer.llava.export import ORIGINAL_ARCHITECTURES, SGLANG_CLIP_MARKER, export_llava_original

# SGLang's LlamaForCausalLM module tree (srt/models/llama.py): attribute -> the class it holds. Every hop is
# checked against the source below; the leaves are layers holding "weight".
LLAMA_TREE = {
    "LlamaForCausalLM": {"model": "LlamaModel", "lm_head": None},
    "LlamaModel": {"embed_tokens": None, "layers": "LlamaDecoderLayer", "norm": None},
    "LlamaDecoderLayer": {
        "self_attn": "LlamaAttention",
        "mlp": "LlamaMLP",
        "input_layernorm": None,
        "post_attention_layernorm": None,
    },
    "LlamaAttention": {"qkv_proj": None, "o_proj": None},
    "LlamaMLP": {"gate_up_proj": None, "down_proj": None},
}


def classes(path: Path) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)}


def method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    return next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name)


def assigned_literal(function: ast.FunctionDef, name: str) -> Any:
    """The literal a function assigns to local ``name`` (a dict or list of tuples in SGLang's loaders)."""
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{function.name} no longer assigns {name}: re-read SGLang's loader")


def self_attributes(cls: ast.ClassDef) -> set[str]:
    """Attributes a class assigns as ``self.X = ...`` (or in a tuple: ``self.X, self.Y = ...``)."""
    targets = [
        element
        for node in ast.walk(cls)
        if isinstance(node, ast.Assign)
        for target in node.targets
        for element in (target.elts if isinstance(target, ast.Tuple) else [target])
    ]
    return {
        t.attr
        for t in targets
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }


def config_reads(function: ast.FunctionDef) -> set[str]:
    """Fields read as ``self.config.X`` or ``config.X`` (not through ``getattr`` with a default)."""
    reads = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            value = node.value
            on_self = isinstance(value, ast.Attribute) and value.attr == "config"
            on_self = on_self and isinstance(value.value, ast.Name) and value.value.id == "self"
            if on_self or (isinstance(value, ast.Name) and value.id == "config"):
                reads.add(node.attr)
    return reads


def lands_in_llama(name: str, source: dict[str, ast.ClassDef]) -> bool:
    """Whether ``name`` (after SGLang's stacked mapping) walks SGLang's Llama module tree to a weight."""
    parts, owner = name.split("."), "LlamaForCausalLM"
    i = 0
    while i < len(parts) - 1:
        attr = parts[i]
        if attr not in LLAMA_TREE[owner] or attr not in self_attributes(source[owner]):
            return False
        child = LLAMA_TREE[owner][attr]
        if attr == "layers":
            i += 1
            if not parts[i].isdigit():
                return False
        if child is None:
            return i == len(parts) - 2 and parts[-1] in ("weight", "bias")
        owner = child
        i += 1
    return False


def export(root: Path, projector: str) -> tuple[Path, dict[str, Any], dict[str, tuple[int, ...]]]:
    """Export a tiny LLaVA in the original layout: (folder, config.json, tensor name -> shape)."""
    dirs = write_parts(root / "parts")
    torch.manual_seed(0)
    llava = assemble_llava(dirs.vision, dirs.lm, dirs.tokenizer, ArchitectureConfig(projector=projector))
    out = export_llava_original(llava.model, llava.processor, root / "clip-llava")
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    return out, json.loads((out / "config.json").read_text()), shapes


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Any], dict[str, tuple[int, ...]]]:
    return export(tmp_path_factory.mktemp("export"), "mlp2x_gelu")


@pytest.fixture(scope="module")
def sglang_models() -> Path:
    return sglang_env_or_skip().path / "sglang" / "srt" / "models"


@pytest.mark.slow
def test_architecture_is_one_sglang_registers(sglang_models: Path, exported: tuple) -> None:
    tree = ast.parse((sglang_models / "llava.py").read_text())
    entry = next(
        n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "EntryClass"
    )
    registered = {element.id for element in entry.elts}
    assert set(ORIGINAL_ARCHITECTURES.values()) <= registered
    _, config, _ = exported
    assert config["architectures"] == ["LlavaLlamaForCausalLM"]
    assert "LlavaNextForConditionalGeneration" not in registered  # why llava-hf presets stay local


@pytest.mark.slow
def test_config_has_every_field_sglangs_llava_reads(sglang_models: Path, exported: tuple) -> None:
    llava = classes(sglang_models / "llava.py")
    reads = config_reads(method(llava["LlavaBaseForCausalLM"], "load_weights"))
    reads |= config_reads(method(llava["LlavaLlamaForCausalLM"], "__init__"))
    # text_config / vision_config are sub-configs transformers' LlavaConfig builds when SGLang loads config.json.
    reads -= {"text_config", "vision_config"}
    assert {
        "mm_vision_tower",
        "mm_vision_select_layer",
        "mm_vision_select_feature",
        "mm_hidden_size",
    } <= reads
    _, config, _ = exported
    assert reads <= set(config), f"missing in config.json: {sorted(reads - set(config))}"
    load_weights = ast.unparse(method(llava["LlavaBaseForCausalLM"], "load_weights"))
    assert (
        repr(config["mm_vision_select_feature"]) in load_weights
        or f'"{config["mm_vision_select_feature"]}"' in load_weights
    )
    # SGLang picks the tower class by a substring of the path; ours must be the CLIP one.
    assert f'"{SGLANG_CLIP_MARKER}" in vision_path' in (sglang_models / "llava.py").read_text()
    assert SGLANG_CLIP_MARKER in config["mm_vision_tower"]
    # image_newline exists in SGLang's model only for an "unpad" merge type.
    init = ast.unparse(method(llava["LlavaLlamaForCausalLM"], "__init__"))
    assert "'unpad' in getattr(config, 'mm_patch_merge_type'" in init and "image_newline" in init
    assert "unpad" in config["mm_patch_merge_type"]


def sglang_placement(
    sglang_models: Path, out: Path, config: dict[str, Any], shapes: dict[str, tuple[int, ...]]
) -> tuple[list[str], set[str]]:
    """Follow SGLang's loaders for every exported tensor: (names that land on no parameter or on one of
    another shape, SGLang LLaVA parameters that nothing fills)."""
    llava = classes(sglang_models / "llava.py")
    llama = classes(sglang_models / "llama.py")
    projector_weights = assigned_literal(
        method(llava["LlavaBaseForCausalLM"], "load_weights"), "projector_weights"
    )
    stacked = assigned_literal(
        method(llama["LlamaForCausalLM"], "_legacy_load_weights"), "stacked_params_mapping"
    )
    # The projector SGLang builds: transformers' LlavaMultiModalProjector from the loaded config, after the
    # two hidden sizes LlavaLlamaForCausalLM.__init__ copies in.
    hf_config = AutoConfig.from_pretrained(out, local_files_only=True)
    hf_config.vision_config.hidden_size = config["mm_hidden_size"]
    hf_config.text_config.hidden_size = config["hidden_size"]
    projector = LlavaMultiModalProjector(hf_config)
    llava_params = {f"multi_modal_projector.{n}": tuple(p.shape) for n, p in projector.named_parameters()}
    llava_params["language_model.model.image_newline"] = (config["hidden_size"],)
    misplaced, filled = [], set()
    for name, shape in sorted(shapes.items()):
        if "projector" in name or "vision_tower" in name or "image_newline" in name:
            target = name
            for weight_name, param_name in projector_weights.items():  # load_weights' own loop
                if weight_name in target:
                    target = target.replace(weight_name, param_name)
            if llava_params.get(target) != shape:
                misplaced.append(name)
            filled.add(target)
            continue
        target = name
        for param_name, weight_name, _ in stacked:  # _legacy_load_weights' own loop
            if weight_name in target:
                target = target.replace(weight_name, param_name)
                break
        if not lands_in_llama(target, llama):
            misplaced.append(name)
    return misplaced, set(llava_params) - filled


@pytest.mark.slow
def test_every_weight_name_lands_on_an_sglang_parameter(sglang_models: Path, exported: tuple) -> None:
    out, config, shapes = exported
    assert any(".q_proj." in n for n in shapes) and any(".gate_proj." in n for n in shapes)
    assert "model.mm_projector.0.weight" in shapes and "model.image_newline" in shapes
    assert sglang_placement(sglang_models, out, config, shapes) == ([], set())


@pytest.mark.slow
def test_a_linear_projector_export_is_for_original_llava_only(sglang_models: Path, tmp_path: Path) -> None:
    # docs/llava_trainer.md: SGLang always builds a 2-layer projector, so it cannot load a one-layer one.
    out, config, shapes = export(tmp_path, "linear")
    misplaced, unfilled = sglang_placement(sglang_models, out, config, shapes)
    assert misplaced == ["model.mm_projector.bias", "model.mm_projector.weight"]
    assert unfilled == {f"multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}


def test_the_name_check_rejects_names_sglang_would_drop() -> None:
    source = {
        name: ast.parse(
            f"class {name}:\n    def __init__(self):\n"
            + "".join(f"        self.{attr} = 1\n" for attr in attrs)
        ).body[0]
        for name, attrs in LLAMA_TREE.items()
    }
    assert lands_in_llama("model.layers.3.self_attn.qkv_proj.weight", source)
    assert lands_in_llama("lm_head.weight", source)
    assert not lands_in_llama("model.layers.3.self_attn.q_proj.weight", source)  # unmapped: silently dropped
    assert not lands_in_llama("model.language_model.layers.0.mlp.down_proj.weight", source)
    assert not lands_in_llama("model.layers.x.mlp.down_proj.weight", source)


@pytest.mark.slow
def test_the_embedded_models_export_lands_too(sglang_models: Path, tmp_path: Path) -> None:
    # The checkpoint the GPU check (scripts/sglang_gpu_check.py) serves: same placement check, real sizes.
    checkpoint = Path(__file__).resolve().parents[3] / "assets/models/synthworld-llava-next"
    parts = load_llava(checkpoint)
    out = export_llava_original(parts.model, parts.processor, tmp_path / "clip-embedded")
    with safe_open(str(out / "model.safetensors"), "pt") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlavaLlamaForCausalLM"]
    assert sglang_placement(sglang_models, out, config, shapes) == ([], set())
