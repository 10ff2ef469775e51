"""The launcher's parameter form in Gradio, built from ``form_spec``'s field specs.

Gradio needs a fixed set of components, so every job type gets its own column of components (one per field),
and only the selected type's column is visible. A field's error replaces its help line (``info``, under the
label; Gradio renders it as Markdown), so errors cost no components of their own: with every type's fields on
the page, the app's component count matters for how fast the page loads. Filling, reading and marking errors go
through this class, which knows which component belongs to which type and field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from trainer.launcher.form_spec import (
    FieldSpec,
    default_preset,
    field_specs,
    json_to_form,
    preset_values,
    to_component,
    to_param,
)
from trainer.launcher.job_types import JobType
from trainer.launcher.param_types import JobParamsError

FLOAT_STEP = 0.01  # the arrows' step of a float box; any value can still be typed


@dataclass(frozen=True)
class TypeForm:
    """One job type's column: its specs and, in the same order, its components."""

    specs: list[FieldSpec]
    column: gr.Column
    inputs: list[gr.components.Component]


def field_component(job: str, spec: FieldSpec) -> gr.components.Component:
    """The component a field's kind asks for, filled with its default and labelled with its help.

    A number box gets no ``minimum`` / ``maximum``: Gradio would refuse a value outside them before the
    handler runs, in a pop-up that names no field; the bounds are in the help line and the validation's
    message takes its place."""
    common: dict[str, Any] = {"label": spec.label, "info": spec.info or None, "interactive": True,
                              "elem_id": f"launcher-field-{job}-{spec.name}"}  # fmt: skip
    if spec.kind in ("int", "float") and not spec.as_text:
        integer = spec.kind == "int"
        return gr.Number(value=spec.default, precision=0 if integer else None,
                         step=1 if integer else FLOAT_STEP, **common)  # fmt: skip
    if spec.kind == "bool":
        return gr.Checkbox(value=spec.default, **common)
    if spec.kind == "choice":
        return gr.Dropdown(list(spec.choices), value=spec.default, **common)
    return gr.Textbox(value=to_component(spec, spec.default), placeholder=spec.placeholder,
                      max_length=spec.max_length, **common)  # fmt: skip


def error_text(message: str) -> str:
    """A field's help line while its value is refused."""
    return f"⚠ **{message}**"


class ParamsForm:
    """Every job type's form; ``shown`` is visible at first, filled from its default preset."""

    def __init__(self, job_types: Mapping[str, JobType], shown: str) -> None:
        self.job_types = dict(job_types)
        self.forms: dict[str, TypeForm] = {}
        for name, job_type in self.job_types.items():
            specs = field_specs(job_type, default_preset(job_type))
            with gr.Column(visible=name == shown, elem_id=f"launcher-form-{name}") as column:
                inputs = [field_component(name, spec) for spec in specs]
            self.forms[name] = TypeForm(specs, column, inputs)

    @property
    def columns(self) -> list[gr.Column]:
        return [form.column for form in self.forms.values()]

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [c for form in self.forms.values() for c in form.inputs]

    # -- updates, each for the whole list its property names -------------------------------------------------

    def visibility(self, shown: str) -> list[Any]:
        return [gr.update(visible=name == shown) for name in self.forms]

    def fill(
        self, job_type: str, values: Mapping[str, Any], errors: Mapping[str, str] | None = None
    ) -> list[Any]:
        """``job_type``'s fields: the ``values`` given (the others keep theirs), and each help line back, or
        the field's error in its place. Every other type's components keep everything."""
        errors = errors or {}
        updates = []
        for name, form in self.forms.items():
            for spec in form.specs:
                if name != job_type:
                    updates.append(gr.skip())
                    continue
                change: dict[str, Any] = {
                    "info": error_text(errors[spec.name]) if spec.name in errors else spec.info
                }
                if spec.name in values:
                    change["value"] = to_component(spec, values[spec.name])
                updates.append(gr.update(**change))
        return updates

    def show_errors(self, job_type: str, field_errors: Mapping[str, str]) -> list[Any]:
        """Each of ``job_type``'s fields shows its error, or its help again; values stay."""
        return self.fill(job_type, {}, field_errors)

    def values(self, job_type: str, flat: Sequence[Any]) -> list[Any]:
        """``job_type``'s field values out of the values of ``inputs`` (every type's, in order)."""
        start = 0
        for name, form in self.forms.items():
            if name == job_type:
                return list(flat[start : start + len(form.inputs)])
            start += len(form.inputs)
        raise JobParamsError(f"unknown job type {job_type!r}; registered types: {sorted(self.forms)}")

    # -- events ----------------------------------------------------------------------------------------------

    def on_type(self, job_type: str) -> list[Any]:
        """A type picked by hand: its presets, its default preset's values, no errors. Outputs: preset,
        parameters JSON, ``inputs``."""
        t = self.job_types[job_type]
        preset = default_preset(t)
        return [gr.Dropdown(list(t.presets), value=preset), preset_json(t, preset),
                *self.fill(job_type, preset_values(t, preset))]  # fmt: skip

    def on_preset(self, job_type: str, preset: str | None, text: str, *flat: Any) -> list[Any]:
        """A preset picked by hand: its values, but a field whose value the old preset would not have set (the
        user's or a flow's edit, e.g. a prefilled subset) keeps it; no errors. The old preset is the parameters
        JSON's (every event that sets the preset also writes the JSON); none there: the defaults. Inputs: job
        type, preset, parameters JSON, ``inputs``; outputs: parameters JSON, ``inputs``."""
        t = self.job_types[job_type]
        try:
            old = json.loads(text or "{}")
        except json.JSONDecodeError:
            old = {}
        old_preset = old.get("preset") if isinstance(old, dict) and old.get("preset") in t.presets else None
        baseline = preset_values(t, old_preset)
        current = {
            s.name: to_param(s, v) for s, v in zip(self.forms[job_type].specs, self.values(job_type, flat))
        }
        edits = {name: value for name, value in current.items() if value != baseline[name]}
        values = {**preset_values(t, preset), **edits}
        shown = json.dumps({"preset": preset, **values} if preset else values, indent=1)
        return [shown, *self.fill(job_type, values)]

    def on_apply(self, job_type: str, text: str) -> list[Any]:
        """JSON parameters (the API's shape) into the form. Outputs: preset, status, ``inputs``."""
        t = self.job_types[job_type]
        try:
            raw = json.loads(text or "{}")
            if not isinstance(raw, dict):
                raise JobParamsError(
                    f"{job_type}: parameters must be a JSON object, got {type(raw).__name__}"
                )
            preset, values, errors = json_to_form(t, raw)
        except (json.JSONDecodeError, JobParamsError) as exc:
            raise gr.Error(f"cannot fill the form: {exc}", print_exception=False) from exc
        status = "Form filled from the JSON." if not errors else "Form filled; the fields marked ⚠ were not."
        return [gr.Dropdown(list(t.presets), value=preset), status, *self.fill(job_type, values, errors)]


def preset_json(job_type: JobType, preset: str | None) -> str:
    """The parameters JSON of a preset with every value spelt out (an editable start for the API)."""
    values = preset_values(job_type, preset)
    return json.dumps({"preset": preset, **values} if preset else values, indent=1)
