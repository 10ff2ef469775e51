"""The launcher form as data: one ``FieldSpec`` per field of a job type's parameter dataclass (kind, default,
choices, bounds, help), and the JSON parameters a filled-in form stands for. Pure: the tab (``form.py``) turns
the specs into components; tests check the specs without Gradio.

An optional number (``int | None``) is typed into a text box, because Gradio's number box cannot start empty (its
page code turns None into 0, and 0 is a real value: "checkpoint at the end only"); ``to_param`` reads the text.

Help text is each field's attribute docstring (the string literal under it, ``job_params``' convention); the
kind, choices and bounds come from ``param_types``, the same reading of the annotation the validation uses.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from trainer.launcher.job_types import REQUIRED, JobType
from trainer.launcher.param_types import MAX_TEXT, JobParamsError, check_value, number_text, param_types

FieldKind = Literal["int", "float", "bool", "choice", "text", "path"]
PATH_HINT = "a path inside the project, or a job's result in the workspace"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: FieldKind
    """``path``: a text field the validation confines and checks for existence."""
    default: Any
    """The selected preset's value (else the dataclass default)."""
    optional: bool
    """An empty number box is a value (None: the trainer preset's own)."""
    required: bool
    """The job type refuses an empty value."""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    max_length: int | None = None

    @property
    def label(self) -> str:
        return self.name.replace("_", " ") + (" (required)" if self.required else "")

    @property
    def info(self) -> str:
        """The help line under the component: the field's help, and a number's bounds."""
        if self.kind in ("int", "float") and self.minimum is not None and self.maximum is not None:
            return f"{self.help} ({number_text(self.minimum)} to {number_text(self.maximum)})".lstrip()
        return self.help

    @property
    def placeholder(self) -> str | None:
        if self.kind == "path":
            return PATH_HINT
        if self.kind in ("int", "float") and self.optional:
            return f"{'a whole number' if self.kind == 'int' else 'a number'}, or empty"
        return None

    @property
    def as_text(self) -> bool:
        """The field is a text box holding something else (an optional number)."""
        return self.kind in ("int", "float") and self.optional


def to_param(spec: FieldSpec, value: Any) -> Any:
    """A component's value as the parameter's JSON value: an optional number's text is parsed (empty: None);
    text that is not a number is passed on as it is, so the validation names the field and shows it."""
    if not (spec.as_text and isinstance(value, str)):
        return value
    text = value.strip()
    if not text:
        return None
    try:
        return int(text) if spec.kind == "int" else float(text)
    except ValueError:
        return value


def to_component(spec: FieldSpec, value: Any) -> Any:
    """A parameter's value as its component holds it (the inverse of ``to_param``)."""
    if spec.as_text:
        return "" if value is None else str(value)
    return value


@functools.cache
def field_help(params_type: type) -> dict[str, str]:
    """Field name -> its attribute docstring (the string literal right after the annotated assignment)."""
    (cls,) = ast.parse(textwrap.dedent(inspect.getsource(params_type))).body
    assert isinstance(cls, ast.ClassDef)
    helps = {}
    for node, after in zip(cls.body, cls.body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            helps[node.target.id] = " ".join(after.value.value.split())  # one line: a wrapped docstring too
    return helps


def default_preset(job_type: JobType) -> str | None:
    """The preset the form starts from: ``tiny`` (seconds on a CPU) where the type has one."""
    return "tiny" if "tiny" in job_type.presets else next(iter(job_type.presets), None)


def preset_values(job_type: JobType, preset: str | None) -> dict[str, Any]:
    """Every field's value under ``preset`` (None: the dataclass defaults)."""
    return {**job_type.defaults(), **(dict(job_type.presets[preset]) if preset else {})}


def field_specs(job_type: JobType, preset: str | None = None) -> list[FieldSpec]:
    """The form of ``job_type`` in field order, its defaults from ``preset``."""
    values, helps = preset_values(job_type, preset), field_help(job_type.params_type)
    required = REQUIRED.get(job_type.name, ())
    specs = []
    for name, ptype in param_types(job_type.params_type).items():
        kind: FieldKind = "path" if ptype.kind == "text" and name in job_type.path_fields else ptype.kind
        bounds = ptype.bounds
        specs.append(
            FieldSpec(
                name=name,
                kind=kind,
                default=values[name],
                optional=ptype.optional,
                required=name in required,
                choices=ptype.choices,
                minimum=None if bounds is None else bounds.minimum,
                maximum=None if bounds is None else bounds.maximum,
                help=helps.get(name, ""),
                max_length=MAX_TEXT if kind in ("text", "path") else None,
            )
        )
    return specs


def form_params(job_type: JobType, preset: str | None, values: Sequence[Any]) -> dict[str, Any]:
    """The JSON parameters a filled-in form stands for: ``preset`` plus the fields whose value differs from
    it (what ``/launcher_start`` takes; ``params_from`` of it equals ``params_from`` of every field)."""
    base, specs = preset_values(job_type, preset), field_specs(job_type, preset)
    if len(values) != len(specs):
        raise ValueError(f"{job_type.name}: the form has {len(specs)} fields, got {len(values)} values")
    params = {spec.name: to_param(spec, value) for spec, value in zip(specs, values)}
    changed = {name: value for name, value in params.items() if value != base[name]}
    return {"preset": preset, **changed} if preset else changed


def json_to_form(
    job_type: JobType, raw: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any], dict[str, str]]:
    """What the form shows for JSON parameters (the API's shape): (preset, field values, field errors).

    A value of the wrong type is left out of the values and named in the errors, so the form keeps a value its
    component can hold; an unknown preset or parameter raises ``JobParamsError`` (not a field's fault)."""
    preset, values = job_type.split_params(raw)
    types = param_types(job_type.params_type)
    shown, errors = preset_values(job_type, preset), {}
    for name, value in values.items():
        try:
            shown[name] = check_value(job_type.name, name, value, types[name])
        except JobParamsError as exc:
            errors[name] = str(exc)
    return preset, shown, errors
