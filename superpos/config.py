"""Config dataclasses: help text per field, validation in ``__post_init__``, JSON round-trip.

Every config in the package (method configs, run configs) derives from :class:`ConfigBase`,
in the manner of PEFT's ``PromptTuningConfig``: a field is declared with
``field(default=..., metadata={"help": "..."})`` and checked in ``__post_init__``.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs) -> Any:
    """A dataclass field with help text (``default_factory`` for mutable defaults)."""
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def require(condition: bool, field_name: str, message: str) -> None:
    """Raise ``ValueError`` naming the offending field when ``condition`` is false."""
    if not condition:
        raise ValueError(f"{field_name}: {message}")


@dataclasses.dataclass
class ConfigBase:
    """Base for all configs: ``to_dict``/``from_dict``/``to_json``/``from_json`` and field help."""

    kind: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)

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

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}
