"""Model presets: the shipped registry is valid, bad files fail with errors that name file/preset/field, and
model names resolve by explicit rules (preset name, local directory, hub id), never by name sniffing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_demo.presets import (
    DEFAULT_PRESETS_PATH,
    PROJECT_ROOT,
    ModelPreset,
    PresetError,
    UnknownModelError,
    load_presets,
    main,
    resolve_model,
)
from vision_common.chat.conversation import Conversation
from vision_common.chat.templates import UnknownTemplateError, get_template, render

# Hand-written expectations from the task and serving.md §2 (checkpoint, template, backend, SGLang template).
EXPECTED = {
    "llava-hf/llava-v1.6-mistral-7b-hf": ("mistral_instruct", "transformers", None),
    "llava-hf/llava-v1.6-vicuna-7b-hf": ("vicuna_v1", "transformers", None),
    "liuhaotian/llava-v1.6-vicuna-7b": ("vicuna_v1", "sglang", "vicuna_v1.1"),
    "lmms-lab/llama3-llava-next-8b": ("llama_3", "sglang", "llava_llama_3"),
    "llava-hf/llava-v1.6-34b-hf": ("chatml_direct", "transformers", None),
    "assets/models/synthworld-llava-next": ("vicuna_v1", "transformers", None),
}


def test_shipped_presets_match_the_expected_registry():
    presets = load_presets()
    by_checkpoint = {p.checkpoint: (p.template, p.backend, p.sglang_chat_template) for p in presets.values()}
    assert by_checkpoint == EXPECTED
    assert presets["synthworld-llava-next"].source == "local"
    assert all(p.source == "hub" for name, p in presets.items() if name != "synthworld-llava-next")


@pytest.mark.parametrize("name", sorted(load_presets()))
def test_every_preset_template_exists_and_renders(name):
    preset = load_presets()[name]
    template = get_template(preset.template)
    prompt = render(Conversation().with_user("What shape?", ["img"]), template)
    assert prompt.text.count("<image>") == 1


def _write(tmp_path: Path, document) -> Path:
    path = tmp_path / "presets.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return path


def _document(**overrides) -> dict:
    entry = {"checkpoint": "owner/model", "source": "hub", "template": "vicuna_v1", "backend": "transformers"}
    entry.update(overrides)
    return {"format_version": 1, "presets": {"mine": entry}}


BAD_FILES = [
    ('{"format_version": 1, "presets": {', r"not valid JSON \(line 1, column"),
    ({"format_version": 2, "presets": {}}, "'format_version' must be 1"),
    ({"format_version": 1, "presets": {}}, "'presets' must be a non-empty object"),
    ([1, 2], "top level must be an object"),
    (_document(template="mistral_orca"), r"preset 'mine': field 'template': unknown template 'mistral_orca'"),
    (_document(backend="vllm"), r"preset 'mine': field 'backend' must be one of"),
    (_document(source="s3"), r"preset 'mine': field 'source'"),
    (
        _document(checkpoint="not-a-hub-id"),
        r"preset 'mine': field 'checkpoint' 'not-a-hub-id' is not a hub id",
    ),
    (_document(templte="vicuna_v1"), r"preset 'mine': unknown field\(s\) \['templte'\]"),
    (_document(notes=3), r"preset 'mine': field 'notes' has the wrong type"),
    (_document(sglang_extra_args=["--x", 1]), "list of strings"),
    (_document(backend="sglang"), "backend 'sglang' needs 'sglang_chat_template'"),
    (
        _document(backend="sglang", sglang_chat_template="vicuna_v1"),
        "not one of the checked SGLang templates",
    ),
    (
        _document(backend="sglang", sglang_chat_template="vicuna_v1.1", template="llava_v1"),
        "renders differently from SGLang's 'vicuna_v1.1'; use 'vicuna_v1'",
    ),
]


@pytest.mark.parametrize(("document", "message"), BAD_FILES)
def test_corrupted_presets_file_names_file_and_problem(tmp_path, document, message):
    path = _write(tmp_path, document)
    with pytest.raises(PresetError, match=message) as info:
        load_presets(path)
    assert str(path.resolve()) in str(info.value)


def test_missing_field_and_missing_file(tmp_path):
    document = _document()
    del document["presets"]["mine"]["backend"]
    with pytest.raises(PresetError, match=r"preset 'mine': missing field\(s\) \['backend'\]"):
        load_presets(_write(tmp_path, document))
    with pytest.raises(PresetError, match="nope.json: presets file not found"):
        load_presets(tmp_path / "nope.json")


def test_edited_file_is_reloaded_and_results_are_not_shared(tmp_path):
    path = _write(tmp_path, _document())
    first = load_presets(path)
    first.clear()  # callers get their own dict
    assert list(load_presets(path)) == ["mine"]
    path.write_text(
        json.dumps(_document(template="chatml_direct", checkpoint="owner/other-model")), encoding="utf-8"
    )
    assert load_presets(path)["mine"].template == "chatml_direct"


def test_preset_dataclass_validates_directly():
    with pytest.raises(PresetError, match="preset 'x': field 'template'"):
        ModelPreset(name="x", checkpoint="a/b", source="hub", template="nope", backend="transformers")


# -- resolution ---------------------------------------------------------------------------------------------


def test_resolve_preset_name_and_local_preset_path(monkeypatch):
    resolved = resolve_model("synthworld-llava-next")
    expected = str((PROJECT_ROOT / "assets/models/synthworld-llava-next").resolve())
    assert (resolved.checkpoint, resolved.source, resolved.template) == (expected, "local", "vicuna_v1")
    # The preset's path (absolute or project-relative from the root) means the same preset, built or not.
    assert resolve_model(expected).name == "synthworld-llava-next"
    monkeypatch.chdir(PROJECT_ROOT)
    assert resolve_model("assets/models/synthworld-llava-next").name == "synthworld-llava-next"
    assert resolve_model("llama3-llava-next-8b").sglang_chat_template == "llava_llama_3"


def test_resolve_hub_ids_case_insensitively_to_presets():
    resolved = resolve_model("LLaVA-HF/llava-v1.6-34b-hf")
    assert (resolved.name, resolved.template, resolved.checkpoint) == (
        "llava-v1.6-34b-hf",
        "chatml_direct",
        "llava-hf/llava-v1.6-34b-hf",
    )
    assert resolve_model("liuhaotian/llava-v1.6-vicuna-7b").sglang_extra_args == (
        "--tokenizer-path",
        "llava-hf/llava-1.5-7b-hf",
    )


def test_unregistered_checkpoints_get_no_template_unless_given(tmp_path):
    hub = resolve_model("someone/llava-v1.6-mistral-finetune")
    # No sniffing: "mistral" in the name does not pick a template.
    assert (hub.source, hub.backend, hub.template, hub.preset) == ("hub", "transformers", None, None)
    local = resolve_model(str(tmp_path))
    assert (local.source, local.checkpoint, local.template) == ("local", str(tmp_path.resolve()), None)
    assert resolve_model(str(tmp_path), template="v1").template == "v1"
    assert resolve_model("synthworld-llava-next", template="llava_v1").template == "llava_v1"
    with pytest.raises(UnknownTemplateError):
        resolve_model("synthworld-llava-next", template="vicuna")


def test_unresolvable_names_raise_clear_errors(tmp_path):
    with pytest.raises(UnknownModelError, match="looks like a path but is not an existing directory"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(UnknownModelError, match="presets: .*synthworld-llava-next"):
        resolve_model("not a model")
    with pytest.raises(UnknownModelError, match="empty"):
        resolve_model(" ")


def test_custom_registry_and_project_root(tmp_path):
    presets = load_presets(_write(tmp_path, _document(checkpoint="models/m", source="local")))
    resolved = resolve_model("mine", presets=presets, project_root=tmp_path)
    assert resolved.checkpoint == str(tmp_path / "models" / "m")


def test_cli_lists_presets_and_reports_errors(capsys):
    assert main([]) == 0
    listing = capsys.readouterr().out
    assert "llama3-llava-next-8b" in listing and "--chat-template llava_llama_3" in listing
    assert main(["--resolve", "llava-v1.6-vicuna-7b-hf"]) == 0
    assert json.loads(capsys.readouterr().out)["template"] == "vicuna_v1"
    with pytest.raises(SystemExit) as info:
        main(["--resolve", "./missing-dir"])
    assert info.value.code == 2
    assert "UnknownModelError" in capsys.readouterr().err


def test_default_presets_path_is_the_shipped_file():
    assert DEFAULT_PRESETS_PATH.name == "presets.json" and DEFAULT_PRESETS_PATH.is_file()
