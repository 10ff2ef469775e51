"""The launcher's form generated from the job types' parameter dataclasses: field specs (kind, default from the
preset, choices, bounds, help), the JSON a filled-in form stands for, validation naming every bad field, and the
Gradio form built from the specs (components per kind, one visible column, errors next to their fields)."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import gradio as gr
import pytest

from tests.support.launcher_fake import FAKE
from trainer.launcher.form import ParamsForm, error_text
from trainer.launcher.form_spec import (
    field_help,
    field_specs,
    form_params,
    json_to_form,
    preset_values,
    to_component,
)
from trainer.launcher.job_params import LlavaConfig, ReactPreset, ReactStrategy
from trainer.launcher.job_types import JOB_TYPES, JobParamsError
from trainer.launcher.manager import JobManager
from trainer.launcher.settings import LauncherSettings
from trainer.launcher.tab import LauncherActions, build_launcher_tab

STAGE2 = JOB_TYPES["llava-stage2"]


def test_specs_follow_the_dataclass_types_the_preset_and_the_help():
    specs = {s.name: s for s in field_specs(STAGE2, "tiny")}
    assert list(specs) == ["config", "data", "images", "init", "vision_tower", "language_model", "tokenizer",
                           "max_steps", "checkpoint_every", "micro_batch_size", "processes"]  # fmt: skip
    config, data, steps, batch = specs["config"], specs["data"], specs["max_steps"], specs["micro_batch_size"]
    assert (config.kind, config.default, config.choices) == (
        "choice", "tiny", ("tiny", "synthworld", "llava_1_5_7b", "llava_next_7b"))  # fmt: skip
    assert (data.kind, data.required, data.default, data.label) == ("path", True, "", "data (required)")
    assert data.help == "LLaVA conversation JSON (stage 1: captions, stage 2: instructions)."
    assert data.placeholder and data.max_length == 1000
    # The tiny preset's values, the validation's bounds, None allowed where the type says `| None`.
    assert (steps.kind, steps.default, steps.minimum, steps.maximum, steps.optional) == (
        "int",
        6,
        0,
        10**9,
        True,
    )
    assert steps.info == "Optimizer updates (empty: the trainer preset's). (0 to 1e9)"
    assert (
        steps.as_text and steps.placeholder == "a whole number, or empty"
    )  # Gradio's number box shows None as 0
    assert (batch.default, batch.optional, specs["init"].required) == (None, True, False)
    assert {s.name: s.default for s in field_specs(STAGE2, "synthworld")}["init"] == (
        "assets/models/synthworld-llava-next"
    )
    react = {s.name: s for s in field_specs(JOB_TYPES["react-customize"], "tiny")}
    gamma = react["gamma"]
    assert (gamma.kind, gamma.default, gamma.minimum, gamma.maximum) == ("float", 0.9, 0, 1)
    assert react["strategy"].choices == ("gated-image", "locked-text", "locked-image", "full")
    recipe = field_specs(JOB_TYPES["recipe-llava"], "tiny")
    assert [(s.name, s.kind, s.default) for s in recipe] == [("reduced", "bool", True), ("seed", "int", 0)]
    assert [(s.name, s.kind) for s in field_specs(FAKE)] == [
        ("steps", "int"),
        ("sleep", "float"),
        ("fail", "bool"),
        ("hold", "bool"),
    ]


def test_every_field_of_every_registered_job_type_has_help_text():
    missing = [
        f"{name}.{spec.name}" for name, t in JOB_TYPES.items() for spec in field_specs(t) if not spec.help
    ]
    assert missing == []
    assert field_help(FAKE.params_type) == {}  # a class without attribute docstrings has none (no guessing)


def test_the_choices_are_the_trainers_own():
    from trainer.llava.config import PRESETS as LLAVA_PRESETS
    from trainer.react.config import PRESETS as REACT_PRESETS
    from trainer.react.config import STRATEGIES

    assert typing.get_args(LlavaConfig) == LLAVA_PRESETS
    assert typing.get_args(ReactPreset) == REACT_PRESETS
    assert typing.get_args(ReactStrategy) == STRATEGIES


def inputs_for_stage2(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text("[]")
    (tmp_path / "images").mkdir()


def test_a_filled_form_is_the_preset_plus_its_changes_and_validates_like_every_field(tmp_path):
    inputs_for_stage2(tmp_path)
    specs = field_specs(STAGE2, "tiny")
    values = preset_values(STAGE2, "tiny") | {"data": "data.json", "images": "images", "max_steps": 9}
    ordered = [values[s.name] for s in specs]
    # What the components hold: optional numbers as text (" 9 ", "" for the preset's own).
    shown = [to_component(s, values[s.name]) for s in specs]
    assert shown[7:] == ["9", "1", "", 1]
    shown[7] = " 9 "
    raw = form_params(STAGE2, "tiny", shown)
    assert raw == {"preset": "tiny", "data": "data.json", "images": "images", "max_steps": 9}
    assert STAGE2.params_from(raw, tmp_path) == STAGE2.params_from(values, tmp_path)
    no_preset = form_params(STAGE2, None, ordered)  # no preset: the differences from the dataclass defaults
    assert no_preset == {"data": "data.json", "images": "images", "max_steps": 9, "checkpoint_every": 1}
    with pytest.raises(ValueError, match="the form has 11 fields, got 2"):
        form_params(STAGE2, "tiny", ["tiny", ""])
    typo = form_params(STAGE2, "tiny", [*shown[:7], "9x", "", "4", 1])  # text that is no number is passed on
    assert (typo["max_steps"], typo["checkpoint_every"], typo["micro_batch_size"]) == ("9x", None, 4)
    with pytest.raises(
        JobParamsError, match="llava-stage2.max_steps must be int or None, got '9x'"
    ) as caught:
        STAGE2.params_from(typo, tmp_path)
    assert set(caught.value.field_errors) == {"max_steps"}


def test_validation_names_every_bad_field_at_once(tmp_path):
    inputs_for_stage2(tmp_path)
    raw = {"data": "../x.json", "images": "", "max_steps": -1, "micro_batch_size": 2.5, "config": "giant"}
    with pytest.raises(JobParamsError) as caught:
        STAGE2.params_from(raw, tmp_path)
    errors = caught.value.field_errors
    assert set(errors) == {"data", "images", "max_steps", "micro_batch_size", "config"}
    assert "must not contain '..'" in errors["data"]
    assert errors["images"] == "llava-stage2.images is required"
    assert errors["max_steps"] == "llava-stage2.max_steps must be between 0 and 1e9, got -1"
    assert errors["micro_batch_size"] == "llava-stage2.micro_batch_size must be int or None, got 2.5"
    assert errors["config"].startswith("llava-stage2.config must be one of ('tiny', 'synthworld'")
    assert all(message in str(caught.value) for message in errors.values())
    gamma = JOB_TYPES["react-customize"]
    (tmp_path / "s.parquet").write_bytes(b"")
    with pytest.raises(JobParamsError, match=r"gamma must be between 0 and 1, got 1.5") as caught:
        gamma.params_from({"subset": "s.parquet", "base": "images", "gamma": 1.5}, tmp_path)
    assert set(caught.value.field_errors) == {"gamma"}
    with pytest.raises(JobParamsError) as caught:  # a fault of the request, not of one field
        STAGE2.params_from({"preset": "huge"}, tmp_path)
    assert caught.value.field_errors == {}


def test_json_fills_the_form_and_names_values_it_cannot_hold():
    preset, values, errors = json_to_form(STAGE2, {"preset": "tiny", "max_steps": "5", "data": "d.json"})
    assert preset == "tiny" and values["data"] == "d.json" and values["max_steps"] == 6  # the preset's, kept
    assert errors == {"max_steps": "llava-stage2.max_steps must be int or None, got '5'"}
    with pytest.raises(JobParamsError, match=r"unknown parameter\(s\) \['steps'\]"):
        json_to_form(STAGE2, {"steps": 3})


# -- the Gradio form ------------------------------------------------------------------------------------------


def test_the_form_has_one_component_per_field_chosen_by_its_kind():
    types = {"fake": FAKE, "llava-stage2": STAGE2, "react-customize": JOB_TYPES["react-customize"]}
    with gr.Blocks():
        form = ParamsForm(types, "llava-stage2")
    stage2 = form.forms["llava-stage2"]
    kinds = {spec.name: type(c).__name__ for spec, c in zip(stage2.specs, stage2.inputs)}
    assert (kinds["config"], kinds["data"], kinds["max_steps"]) == ("Dropdown", "Textbox", "Textbox")
    max_steps = stage2.inputs[7]  # optional: a text box that may be empty
    assert (max_steps.value, max_steps.placeholder) == ("6", "a whole number, or empty")
    assert max_steps.elem_id == "launcher-field-llava-stage2-max_steps" and "0 to 1e9" in max_steps.info
    steps = form.forms["fake"].inputs[0]
    # No minimum/maximum on the box: Gradio would refuse before the handler, naming no field.
    assert (steps.value, steps.precision, steps.minimum, steps.maximum) == (2, 0, None, None)
    gamma = form.forms["react-customize"].inputs[5]
    assert (gamma.value, gamma.precision, "(0 to 1)" in gamma.info) == (0.9, None, True)
    fake = form.forms["fake"]
    assert [type(c).__name__ for c in fake.inputs] == ["Number", "Number", "Checkbox", "Checkbox"]
    assert [c.visible for c in form.columns] == [False, True, False]
    assert [u["visible"] for u in form.visibility("fake")] == [True, False, False]
    # Filling and errors touch only the named type's components, in the order of ``inputs``; an error takes
    # the place of the field's help line, and the help comes back with the next fill.
    fill = form.fill("fake", {"steps": 9})
    assert len(fill) == len(form.inputs) == 4 + 11 + 10
    assert fill[0] == {"__type__": "update", "value": 9, "info": "(0 to 1e9)"}
    assert fill[1] == {"__type__": "update", "info": "(0 to 1e9)"} and all(u == gr.skip() for u in fill[4:])
    shown = form.show_errors("llava-stage2", {"data": "llava-stage2.data is required"})
    assert shown[4 + 1] == {"__type__": "update", "info": "⚠ **llava-stage2.data is required**"}
    assert shown[4 + 2] == {"__type__": "update", "info": stage2.specs[2].info}
    assert [u for u in shown if "⚠" in u.get("info", "")] == [shown[4 + 1]]
    assert form.values("llava-stage2", list(range(25))) == list(range(4, 15))


def marked(components, updates) -> dict[str, str]:
    """elem_id -> error, for the fields whose help line an update replaced with an error."""
    return {c.elem_id: u["info"] for c, u in zip(components, updates) if "⚠" in u.get("info", "")}


@pytest.fixture()
def page(tmp_path):
    """The launcher tab built in a Blocks (not served) with its manager; the page's handlers are called
    directly, as Gradio would with the components' values."""
    manager = JobManager(tmp_path / "ws", job_types={"fake": FAKE, **JOB_TYPES})
    actions = LauncherActions(manager, LauncherSettings(workspace=tmp_path / "ws"))
    with gr.Blocks() as demo:
        build_launcher_tab(actions)
    handlers = {f.name: f for f in demo.fns.values()}
    return handlers, manager


def test_start_from_the_form_marks_bad_fields_and_queues_a_good_form(page):
    handlers, manager = page
    start = handlers["start_from_page"]
    values = [c.value for c in start.inputs[4:]]  # every type's form as built: the defaults of its presets
    outputs = start.fn("llava-stage2", "tiny", "local", None, *values)
    status, _selected, text, *updates = outputs
    assert status.startswith("**Not started**: 2 fields to fix")
    assert marked(start.outputs[3:], updates) == {
        "launcher-field-llava-stage2-data": error_text("llava-stage2.data is required"),
        "launcher-field-llava-stage2-images": error_text("llava-stage2.images is required"),
    }
    assert all("value" not in u for u in updates)  # what was typed stays
    assert text == '{\n "preset": "tiny"\n}' and manager.registry.jobs() == []
    fake_steps = [c.elem_id for c in start.inputs[4:]].index("launcher-field-fake-steps")
    values[fake_steps] = 1
    status, selected, text, *updates = start.fn("fake", "tiny", "local", None, *values)
    (job,) = manager.registry.jobs()
    assert status == f"Queued **{job.id}** (local)." and selected.constructor_args["value"] == job.id
    assert job.params == {"steps": 1, "sleep": 0.05, "fail": False, "hold": False}
    assert '"steps": 1' in text and marked(start.outputs[3:], updates) == {}


def test_the_json_editor_fills_the_form(page):
    handlers, _ = page
    apply = handlers["on_apply"]
    preset, status, *updates = apply.fn("llava-stage2", '{"preset": "synthworld", "max_steps": 12}')
    assert preset.constructor_args["value"] == "synthworld" and status == "Form filled from the JSON."
    filled = {c.elem_id: u["value"] for c, u in zip(apply.outputs[2:], updates) if "value" in u}
    assert marked(apply.outputs[2:], updates) == {}
    assert filled["launcher-field-llava-stage2-max_steps"] == "12"
    assert filled["launcher-field-llava-stage2-init"] == "assets/models/synthworld-llava-next"
    assert filled["launcher-field-llava-stage2-config"] == "synthworld"
    _preset, status, *updates = apply.fn("llava-stage2", '{"max_steps": "5", "data": "d.json"}')
    assert status == "Form filled; the fields marked ⚠ were not."
    assert marked(apply.outputs[2:], updates) == {
        "launcher-field-llava-stage2-max_steps": error_text(
            "llava-stage2.max_steps must be int or None, got '5'"
        )
    }
    with pytest.raises(gr.Error, match="cannot fill the form: .*unknown preset 'huge'"):
        apply.fn("llava-stage2", '{"preset": "huge"}')
    with pytest.raises(
        gr.Error, match="cannot fill the form: llava-stage2: parameters must be a JSON object"
    ):
        apply.fn("llava-stage2", "[1]")


def test_a_preset_picked_by_hand_keeps_the_values_the_old_preset_did_not_set(page):
    handlers, _ = page
    on_preset = handlers["on_preset"]
    ids = [c.elem_id for c in on_preset.inputs[3:]]
    values = [c.value for c in on_preset.inputs[3:]]
    field = "launcher-field-react-customize-{}".format
    values[ids.index(field("subset"))] = "runs/s.parquet"  # a prefill's (or the user's) value
    values[ids.index(field("config"))] = "synthworld"  # what the synthworld preset sets
    text, *updates = on_preset.fn("react-customize", "tiny", '{"preset": "synthworld"}', *values)
    filled = {c.elem_id: u["value"] for c, u in zip(on_preset.outputs[1:], updates) if "value" in u}
    assert filled[field("subset")] == "runs/s.parquet" and filled[field("config")] == "tiny"
    assert filled[field("max_steps")] == "4" and json.loads(text)["subset"] == "runs/s.parquet"
    # An edit the old preset did not make survives the switch back; the tiny preset's own values do not.
    values[ids.index(field("config"))], values[ids.index(field("max_steps"))] = "tiny", "4"
    values[ids.index(field("gamma"))] = 0.5
    text, *updates = on_preset.fn("react-customize", "synthworld", '{"preset": "tiny"}', *values)
    filled = {c.elem_id: u["value"] for c, u in zip(on_preset.outputs[1:], updates) if "value" in u}
    assert (filled[field("config")], filled[field("max_steps")], filled[field("gamma")]) == (
        "synthworld",
        "",
        0.5,
    )
    assert filled[field("subset")] == "runs/s.parquet" and json.loads(text)["preset"] == "synthworld"
