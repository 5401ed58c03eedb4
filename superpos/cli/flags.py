"""``run``'s flags, generated from the dataclasses: one per ``RunConfig`` field and one per field of any method
config, each with its help, default(s) and choices.

Every flag's parser default is ``None``, which is how ``run`` tells the flags a user gave from the defaults (a
config file's values, then the method's own defaults, fill the rest); the help text shows the real defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any


def parse_value(text: str):
    """A command-line value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def cli_type(hint):
    """An argparse ``type`` for a RunConfig annotation (int, float, str, and ``| None`` of them)."""
    import types
    import typing

    options = [arg for arg in typing.get_args(hint) if arg is not type(None)] if \
        typing.get_origin(hint) in (typing.Union, types.UnionType) else [hint]
    nullable = options != [hint]
    base = options[0] if len(options) == 1 else str

    def parse(text: str):
        if nullable and text.strip().lower() in ("none", "null"):
            return None
        if base is int:
            try:
                return int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    number = math.nan
                if math.isfinite(number) and number.is_integer():
                    return int(number)
                raise argparse.ArgumentTypeError(f"expected an integer{' or none' if nullable else ''}, got {text!r}")
        if base is float:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise argparse.ArgumentTypeError(f"expected a finite number{' or none' if nullable else ''}, "
                                                 f"got {text!r}")
            return number
        return text

    return parse


def _default(field: dataclasses.Field) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def _shown_default(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def field_help(field: dataclasses.Field, defaults: dict[str, Any] | None = None, choices=None) -> str:
    """A field's help text with its default (per method, for method fields) and, for a choice field, its
    choices: argparse shows neither for flags whose parser default is None, which is how the CLI tells the
    flags a user gave from the defaults."""
    parts = [field.metadata.get("help", "").rstrip(".") + "."]
    choices = choices or field.metadata.get("choices")
    if choices:
        parts.append(f"Choices: {', '.join(map(str, choices))}.")
    if defaults is None:
        parts.append(f"Default: {_shown_default(_default(field))}.")
    elif len({json.dumps(v) for v in defaults.values()}) == 1:
        parts.append(f"Default: {_shown_default(next(iter(defaults.values())))} ({', '.join(defaults)}).")
    else:
        parts.append("Defaults: " + ", ".join(f"{m} {_shown_default(v)}" for m, v in defaults.items()) + ".")
    return " ".join(parts).replace("%", "%%")


def _add_field(parser, field: dataclasses.Field, hint, dest: str, help_text: str, choices=None) -> None:
    flag = "--" + field.name.replace("_", "-")
    if hint is bool:
        parser.add_argument(flag, dest=dest, default=None, action=argparse.BooleanOptionalAction, help=help_text)
    else:
        choices = choices or field.metadata.get("choices")
        parser.add_argument(flag, dest=dest, default=None, type=cli_type(hint), metavar=field.name.upper(),
                            choices=choices, help=help_text)


def method_fields() -> dict[str, tuple[dataclasses.Field, Any, dict[str, Any], tuple | None]]:
    """Every method-config field, once: ``{name: (its field in the first method declaring it, its type,
    {method: that method's default}, every declaring method's choices together or None)}``; the chosen method's
    config checks its own choices."""
    from ..config import field_types
    from ..methods import METHODS

    fields: dict[str, tuple[dataclasses.Field, Any, dict[str, Any], tuple | None]] = {}
    for method, spec in METHODS.items():
        hints = field_types(spec.config_class)
        for field in dataclasses.fields(spec.config_class):
            if field.name == "sources":
                continue
            first, hint, defaults, choices = fields.get(field.name, (field, hints[field.name], {}, None))
            own = field.metadata.get("choices")
            if own:
                choices = tuple(dict.fromkeys((*(choices or ()), *own)))
            defaults[method] = _default(field)
            fields[field.name] = (first, hint, defaults, choices)
    return fields


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, a flag per RunConfig field, a flag per method-config field, ``--set`` and ``--source``."""
    from ..config import field_types
    from ..engine import RunConfig

    parser.add_argument("--config", default=None, metavar="RUN.json",
                        help="A whole run config (RunConfig fields as JSON, or YAML for .yaml/.yml); flags override it.")
    hints = field_types(RunConfig)
    for field in dataclasses.fields(RunConfig):
        if field.name in ("method_config", "sources"):
            continue
        _add_field(parser, field, hints[field.name], field.name, field_help(field))
    method_group = parser.add_argument_group(
        "method options", "Fields of the method configs (defaults are the paper's; a method's own default is used "
                          "when a flag is not given). A flag the chosen method lacks is an error.")
    for name, (field, hint, defaults, choices) in method_fields().items():
        if name in hints:  # a RunConfig field of the same name wins; the method's is reachable with --set
            continue
        _add_field(method_group, field, hint, f"method__{name}", field_help(field, defaults, choices), choices)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="A method-config field, e.g. --set m=64 --set softmax=true (repeatable); the flags above "
                             "do the same.")
    parser.add_argument("--source", action="append", default=[], metavar="HASH",
                        help="ATTEMPT: a finished source-prompt run's hash (repeatable).")


def read_config_file(path: str) -> dict:
    """A run config file: a JSON (or, for .yaml/.yml, YAML) object of RunConfig fields."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--config: no such file {file}")
    text = file.read_text()
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # a parser's own error, in one line
        raise ValueError(f"--config: {file} does not parse ({type(error).__name__}: {str(error).splitlines()[0]})") \
            from None
    if not isinstance(data, dict):
        raise ValueError(f"--config: {file} must hold an object of RunConfig fields, got {type(data).__name__}")
    return data


def run_config_from(args):
    """The resolved RunConfig ``run``'s flags describe: a ``--config`` file, overridden by the flags given."""
    from ..config import coerce_field
    from ..engine import RunConfig

    base = read_config_file(args.config) if args.config else {}
    values = {key: value for key, value in vars(args).items()
              if key in {f.name for f in dataclasses.fields(RunConfig)} and value is not None}
    # null in a config file is refused as documented (RunConfig's own check), not read as {}
    method_config = dict(coerce_field(RunConfig, "method_config", base.pop("method_config", {})))
    method_config.update({key[len("method__"):]: value for key, value in vars(args).items()
                          if key.startswith("method__") and value is not None})
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        method_config[key] = parse_value(value)
    sources = args.source or base.pop("sources", [])
    return RunConfig.from_dict({**base, **values, "method_config": method_config, "sources": sources}).resolved()
