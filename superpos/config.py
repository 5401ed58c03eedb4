"""Config dataclasses: help text per field, validation in ``__post_init__``, JSON round-trip.

Every config in the package (method configs, run configs) derives from :class:`ConfigBase`,
in the manner of PEFT's ``PromptTuningConfig``: a field is declared with
``field(default=..., metadata={"help": "..."})`` and checked in ``__post_init__``.

Field types are enforced from the annotations (:func:`coerce_field`), so that a value from a JSON grid file
or a notebook means what its field says or fails in one line naming the field:

- ``bool``: ``True``/``False`` only; the strings ``"false"`` or ``"no"`` and the numbers 0/1 are refused.
- ``int``: integers; an integral float (``2.0``) is taken as the integer (``2``), so both spell the same run
  (same run hash); ``1.5``, ``"8"`` and ``True`` are refused.
- ``float``: any finite number, stored as a float (``1`` becomes ``1.0``: the same run hash as ``1.0``).
- ``str``: strings only. ``list``: a list or tuple (stored as a list; a string is refused, never split into
  letters). ``dict``: a mapping (stored as a dict).
- ``X | None``: ``None`` as well; ``None`` anywhere else is refused (``method_config=None`` included: pass ``{}``).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,
           minimum: float | None = None, above: float | None = None, **kwargs) -> Any:
    """A dataclass field with help text (``default_factory`` for mutable defaults) and the checks its values
    must pass, in one place for every config: ``choices`` (the allowed values), ``minimum`` (inclusive) or
    ``above`` (exclusive) for numbers. ``None`` passes them where the annotation allows it."""
    metadata = {"help": help}
    for key, value in (("choices", tuple(choices) if choices is not None else None), ("minimum", minimum),
                       ("above", above)):
        if value is not None:
            metadata[key] = value
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def require(condition: bool, field_name: str, message: str) -> None:
    """Raise ``ValueError`` naming the offending field when ``condition`` is false."""
    if not condition:
        raise ValueError(f"{field_name}: {message}")


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr, and its type where the repr could mislead."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(value, str):
        return f"{text} (a string)"
    if isinstance(value, bool):
        return f"{text} (a boolean)"
    if value is None:
        return "None (null)"
    return text


def coerce_value(field_name: str, hint: Any, value: Any) -> Any:
    """``value`` as the annotation ``hint`` asks (see the module docstring), or ``ValueError`` naming the field.

    Annotations other than bool, int, float, str, list, dict and their ``| None`` forms pass values through.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        if value is None and len(options) < len(args):
            return None
        if len(options) == 1:
            return _coerce_one(field_name, options[0], value, " or null" if len(options) < len(args) else "")
        return value
    return _coerce_one(field_name, hint, value, "")


def _coerce_one(field_name: str, hint: Any, value: Any, or_null: str) -> Any:
    base = typing.get_origin(hint) or hint
    if base is bool:
        ok = isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy.bool_ too
        require(ok, field_name, f"must be true or false{or_null}, got {_shown(value)}")
        return bool(value)
    if base is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_":
            return int(value)
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
            and float(value).is_integer()
        require(ok, field_name, f"must be an integer{or_null}, got {_shown(value)}")
        return int(value)
    if base is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"
        require(ok, field_name, f"must be a number{or_null}, got {_shown(value)}")
        require(math.isfinite(value), field_name, f"must be a finite number, got {value!r}")
        return float(value)
    if base is str:
        require(isinstance(value, str), field_name, f"must be a string{or_null}, got {_shown(value)}")
        return value
    if base is list:
        example = f" (e.g. [{value!r}])" if isinstance(value, str) else ""
        require(isinstance(value, (list, tuple)), field_name, f"must be a list{or_null}{example}, got {_shown(value)}")
        return list(value)
    if base is dict:
        require(isinstance(value, Mapping), field_name,
                f"must be an object (a dict of fields){or_null}, got {_shown(value)}")
        return dict(value)
    return value


@functools.lru_cache(maxsize=None)
def field_types(cls: type) -> dict[str, Any]:
    """``{field name: annotation}`` of a config dataclass, its string annotations evaluated."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


@functools.lru_cache(maxsize=None)
def field_checks(cls: type) -> dict[str, dict]:
    """``{field name: {"choices"/"minimum"/"above": ...}}`` of a config dataclass (from :func:`option`)."""
    return {f.name: {k: v for k, v in f.metadata.items() if k != "help"} for f in dataclasses.fields(cls)}


def coerce_field(cls: type, name: str, value: Any, label: str | None = None) -> Any:
    """``value`` as field ``name`` of config class ``cls`` takes it (its type, then its :func:`option` checks);
    errors name ``label`` (default: ``name``)."""
    label = label or name
    value = coerce_value(label, field_types(cls)[name], value)
    if value is None:
        return value
    checks = field_checks(cls).get(name, {})
    if "choices" in checks:
        require(value in checks["choices"], label,
                f"unknown value {value!r}; choose one of {', '.join(map(str, checks['choices']))}")
    if "minimum" in checks:
        require(value >= checks["minimum"], label, f"must be >= {checks['minimum']}, got {value!r}")
    if "above" in checks:
        require(value > checks["above"], label, f"must be > {checks['above']}, got {value!r}")
    return value


@dataclasses.dataclass
class ConfigBase:
    """Base for all configs: ``to_dict``/``from_dict``/``to_json``/``from_json``, field help, and every field
    checked against its annotation (:func:`coerce_field`) by ``__post_init__`` and ``from_dict``."""

    kind: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        self.check_types()

    def check_types(self) -> None:
        """Normalize every field to its annotated type, or raise ``ValueError`` naming the first bad field."""
        for name in field_types(type(self)):
            value = getattr(self, name)
            coerced = coerce_field(type(self), name, value)
            if coerced is not value:
                object.__setattr__(self, name, coerced)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}: expected an object (a dict of fields), got {_shown(data)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**{key: coerce_field(cls, key, value) for key, value in data.items()})

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path):
        path = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        text = path.read_text() if path is not None else str(text_or_path)
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``payload`` (sorted keys, no whitespace): run hashes, data fingerprints."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
