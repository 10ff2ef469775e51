"""What a job parameter's annotation means, in one place: the validation (``check_value``) and the tab's form
(``form_spec``) both read it, so the form offers exactly what the validation accepts.

Supported annotations: ``int``, ``float``, ``bool``, ``str``, ``Literal["a", "b"]``, each optionally ``| None``
and wrapped in ``Annotated[..., Range(lo, hi)]`` for numbers. Anything else is a programming error in a job
type (``TypeError``), caught by a test over every registered type.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from trainer.launcher.job_params import DEFAULT_RANGE, Range

MAX_TEXT = 1000
Kind = Literal["int", "float", "bool", "choice", "text"]


class JobParamsError(ValueError):
    """Bad job parameters; the message names the job type and the field.

    ``field_errors`` maps each bad field to its message (the tab shows each next to its field); it is empty
    for errors of the request as a whole (an unknown preset or parameter)."""

    def __init__(self, message: str, field_errors: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.field_errors: dict[str, str] = dict(field_errors or {})


@dataclass(frozen=True)
class ParamType:
    kind: Kind
    optional: bool = False
    """``None`` is a value (an empty number box): the command then leaves the flag out."""
    choices: tuple[str, ...] = ()
    bounds: Range | None = None
    """Inclusive bounds of a number."""


def param_type(annotation: Any) -> ParamType:
    """The ``ParamType`` of a resolved annotation (``typing.get_type_hints(..., include_extras=True)``)."""
    bounds = None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        bounds = next((e for e in extras if isinstance(e, Range)), None)
    args = typing.get_args(annotation)
    optional = isinstance(annotation, types.UnionType) and type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported parameter annotation {annotation!r}")
        annotation = rest[0]
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        if not all(isinstance(c, str) for c in choices):
            raise TypeError(f"only string choices are supported, got {annotation!r}")
        return ParamType("choice", optional, choices=choices)
    kinds: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "text"}
    if annotation not in kinds:
        raise TypeError(f"unsupported parameter annotation {annotation!r}")
    kind = kinds[annotation]
    if kind in ("int", "float"):
        return ParamType(kind, optional, bounds=bounds or DEFAULT_RANGE)
    return ParamType(kind, optional)


def param_types(params_type: type) -> dict[str, ParamType]:
    """Field name -> ``ParamType`` for a parameter dataclass, in field order."""
    hints = typing.get_type_hints(params_type, include_extras=True)
    return {name: param_type(hints[name]) for name in params_type.__dataclass_fields__}


def number_text(value: float) -> str:
    """1e9 rather than 1000000000.0 or 1e+09 in messages and the form's help."""
    return f"{value:g}".replace("e+0", "e").replace("e+", "e")


def check_value(job: str, name: str, value: Any, ptype: ParamType) -> Any:
    """``value`` as the field stores it (an int for a float field becomes a float), or ``JobParamsError``."""
    if value is None and ptype.optional:
        return None
    if ptype.kind == "choice" and isinstance(value, str):
        if value not in ptype.choices:
            raise JobParamsError(f"{job}.{name} must be one of {ptype.choices}, got {value!r}")
        return value
    number_ok = isinstance(value, int) if ptype.kind == "int" else isinstance(value, int | float)
    if ptype.kind in ("int", "float") and number_ok and not isinstance(value, bool):
        assert ptype.bounds is not None  # param_type gives every number its bounds
        low, high = ptype.bounds.minimum, ptype.bounds.maximum
        if not low <= value <= high:  # also refuses NaN
            raise JobParamsError(
                f"{job}.{name} must be between {number_text(low)} and {number_text(high)}, got {value}"
            )
        return float(value) if ptype.kind == "float" else value
    if ptype.kind == "text" and isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise JobParamsError(f"{job}.{name} is longer than {MAX_TEXT} characters")
        return value
    if ptype.kind == "bool" and isinstance(value, bool):
        return value
    names = {"int": "int", "float": "float", "bool": "bool", "text": "str", "choice": "str"}[ptype.kind]
    raise JobParamsError(f"{job}.{name} must be {names}{' or None' if ptype.optional else ''}, got {value!r}")
