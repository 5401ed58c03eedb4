"""Command line: ``python -m superpos {list,run,grid,reproduce,glance}``.

Bad input exits with status 2 and one line on stderr, before any model loads: a value of the wrong type
(``--seed 1.5``), an unknown name, a bad grid file, a local model folder without weights, and also a disk
that fills up or a results folder that turns read-only part-way (re-running the same command resumes).
Ctrl-C exits with status 130 and one line saying what was kept.
"""
from __future__ import annotations

import sys

try:  # a Ctrl-C while these import is one line too, as in main()
    import argparse
    import contextlib
    import dataclasses
    import json
    import signal
    import threading
    from pathlib import Path
    from typing import Any
except KeyboardInterrupt:
    print("superpos: interrupted", file=sys.stderr)
    sys.exit(130)


def _registries() -> tuple[dict, dict, dict]:
    from .backbones import BACKBONES
    from .methods import METHODS
    from .tasks import TASKS

    return BACKBONES, {name: entry[2] for name, entry in METHODS.items()}, TASKS


def _listing() -> str:
    backbones, methods, tasks = _registries()
    lines = []
    for title, table in (("backbones", backbones), ("methods", methods), ("tasks", tasks)):
        lines.append(f"{title}:")
        width = max(len(name) for name in table)
        lines.extend(f"  {name:<{width}}  {description}" for name, description in table.items())
    return "\n".join(lines)


def _value(text: str):
    """A command-line value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``superpos: error: ...``, exit status 2), like every other bad input."""

    def error(self, message: str):
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


class _UsageError(ValueError):
    pass


def _cli_type(hint):
    """An argparse ``type`` for a RunConfig annotation (int, float, str, and ``| None`` of them)."""
    import math
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


def _field_help(field: dataclasses.Field, defaults: dict[str, Any] | None = None, choices=None) -> str:
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
        parser.add_argument(flag, dest=dest, default=None, type=_cli_type(hint), metavar=field.name.upper(),
                            choices=choices, help=help_text)


def method_fields() -> dict[str, tuple[dataclasses.Field, Any, dict[str, Any], tuple | None]]:
    """Every method-config field, once: ``{name: (its field in the first method declaring it, its type,
    {method: that method's default}, every declaring method's choices together or None)}``; the chosen method's
    config checks its own choices."""
    from .config import field_types
    from .methods import METHODS

    fields: dict[str, tuple[dataclasses.Field, Any, dict[str, Any], tuple | None]] = {}
    for method, (config_class, _, _) in METHODS.items():
        hints = field_types(config_class)
        for field in dataclasses.fields(config_class):
            if field.name == "sources":
                continue
            first, hint, defaults, choices = fields.get(field.name, (field, hints[field.name], {}, None))
            own = field.metadata.get("choices")
            if own:
                choices = tuple(dict.fromkeys((*(choices or ()), *own)))
            defaults[method] = _default(field)
            fields[field.name] = (first, hint, defaults, choices)
    return fields


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import field_types
    from .engine import RunConfig

    parser.add_argument("--config", default=None, metavar="RUN.json",
                        help="A whole run config (RunConfig fields as JSON, or YAML for .yaml/.yml); flags override it.")
    hints = field_types(RunConfig)
    for field in dataclasses.fields(RunConfig):
        if field.name in ("method_config", "sources"):
            continue
        _add_field(parser, field, hints[field.name], field.name, _field_help(field))
    method_group = parser.add_argument_group(
        "method options", "Fields of the method configs (defaults are the paper's; a method's own default is used "
                          "when a flag is not given). A flag the chosen method lacks is an error.")
    for name, (field, hint, defaults, choices) in method_fields().items():
        if name in hints:  # a RunConfig field of the same name wins; the method's is reachable with --set
            continue
        _add_field(method_group, field, hint, f"method__{name}", _field_help(field, defaults, choices), choices)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="A method-config field, e.g. --set m=64 --set softmax=true (repeatable); the flags above "
                             "do the same.")
    parser.add_argument("--source", action="append", default=[], metavar="HASH",
                        help="ATTEMPT: a finished source-prompt run's hash (repeatable).")


def _read_config_file(path: str) -> dict:
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


def _store_from(args):
    from .engine import ResultsStore
    from .paths import results_dir

    return ResultsStore(Path(args.results) if args.results else results_dir() / args.profile)


def _command_run(args) -> int:
    from .engine import RunConfig, run

    base = _read_config_file(args.config) if args.config else {}
    values = {key: value for key, value in vars(args).items()
              if key in {f.name for f in dataclasses.fields(RunConfig)} and value is not None}
    method_config = dict(base.pop("method_config", None) or {})
    method_config.update({key[len("method__"):]: value for key, value in vars(args).items()
                          if key.startswith("method__") and value is not None})
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        method_config[key] = _value(value)
    sources = args.source or base.pop("sources", [])
    from .engine.grid import Interrupted, interrupted_message

    config = RunConfig.from_dict({**base, **values, "method_config": method_config, "sources": sources}).resolved()
    store = _store_from(args)
    try:
        record = run(config, store, retry_failed=args.retry_failed,  # checks the store is writable when it must train
                     report_to=args.report_to)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(store, config)) from None
    best = record.get("best") or {}
    test = best.get("test") or {}
    where = store.record_path(record["hash"])
    state = "cached" if record.get("cached") else record["status"]
    if record["status"] != "done":
        print(f"{config.label()}: {state}: {record.get('reason') or 'no reason recorded'}; record {where}")
        return 1
    print(f"{config.label()}: {state}; score {_shown(test.get('score'))} (lenient {_shown(test.get('lenient_score'))}, "
          f"invalid labels {_shown(test.get('invalid_rate'), 100)} %) at step {best.get('step')}; record {where}")
    return 0


def _shown(value, scale: float = 1.0) -> str:
    """A score for a summary line: one decimal (records keep every digit); ``-`` where there is none."""
    return "-" if value is None else f"{value * scale:.1f}"


def _command_grid(args) -> int:
    from .engine import GridSpec, RunConfig, run_grid

    path = Path(args.file)
    if not path.is_file():
        raise ValueError(f"grid: no such file {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"grid: {path} is not valid JSON ({error})") from None
    except UnicodeDecodeError:
        raise ValueError(f"grid: {path} is not a text (JSON) file") from None
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", type(None): "null"}.get(type(data), "a number")
        raise ValueError(f"grid: {path} must hold a JSON object of GridSpec fields ({{\"tasks\": [...], "
                         f"\"methods\": [...], ...}}), got {kind}")
    if not data:
        raise ValueError(f"grid: {path} is an empty object; name at least tasks and methods (an empty grid would "
                         "run every default)")
    spec = GridSpec.from_dict(data)
    outside = spec.tasks_outside()
    if outside:
        raise ValueError(f"task_budget: {', '.join(map(repr, outside))} not among the grid's tasks "
                         f"({', '.join(spec.tasks + spec.attempt_sources)}); add the task or remove the entry")
    from .engine import expand

    expand(spec)  # every name and field checked before anything runs
    result = run_grid(spec, _store_from(args), retry_failed=args.retry_failed, executor=args.executor,
                      ray_address=args.ray_address, report_to=args.report_to, pack=args.pack)
    for record in result.records:  # why, in one line each (the record keeps the whole reason)
        if record["status"] != "done":
            reason = (record.get("reason") or "no reason recorded").strip().splitlines()[0]
            print(f"  failed: {RunConfig.from_dict(record['config']).label()}: {reason}", file=sys.stderr)
    return 0 if result.failed == 0 else 1


def _command_reproduce(args) -> int:
    try:
        from .reproduce import reproduce

        return reproduce(args.profile, notebooks=args.notebook or None, from_reference=args.from_reference,
                         accept=args.accept, extend=args.extend, pack=args.pack)
    except KeyboardInterrupt as error:
        if error.args:  # already says what was kept (a run's checkpoint, a notebook's partial copy)
            raise
        raise KeyboardInterrupt(f"interrupted; finished runs are kept in results/{args.profile}/ and the same "
                                "command goes on from them") from None


def _command_glance(args) -> int:
    from .engine import ResultsStore, load_records
    from .paths import reference_dir
    from .profiles import profile_configs
    from .report import claim_summary, glance

    if args.write_docs:  # every generated block of README.md and docs/TASKS.md, from the committed references
        from .report.generated import write_docs

        print(f"glance: wrote {', '.join(write_docs()) or 'no block'}")
        return 0
    store = (ResultsStore(reference_dir(args.profile), read_only=True) if args.reference
             else ResultsStore(profile=args.profile))
    configs = profile_configs(args.profile)
    runs = load_records(store, configs, only_done=True)
    if runs.empty:
        raise ValueError(f"glance: no finished run of profile {args.profile} in {store.root}")
    # Printed only: notebook 05 writes the profile's glance table, from every run the profile asks for.
    from .paths import shown_path

    if args.markdown:  # the README's "Results at a glance" block, as the tests check it
        from .report.glance import glance_markdown

        print(glance_markdown(runs, wanted=len(configs)), end="")
        return 0
    print(f"glance: profile {args.profile}, {len(runs)} of its {len(configs)} runs finished in {shown_path(store.root)}; "
          "paired differences of the strict test score over seeds (points; positive: the paper's way), 95 % "
          "t-intervals, Holm-corrected p within each claim")
    print(claim_summary(runs_table := glance(runs)).to_string(index=False))
    print(runs_table.to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="python -m superpos", description="Soft prompt tuning, reproducibly.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_listing())
    parser.add_argument("--version", action="version", version=f"superpos {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="Print the available backbones, methods and tasks.")

    run_parser = commands.add_parser("run", help="Run one configuration (skipped when its record exists).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_listing())
    _add_run_arguments(run_parser)
    grid_parser = commands.add_parser("grid", help="Run a grid from a JSON file (GridSpec fields).",
                                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_listing())
    grid_parser.add_argument("file", help="JSON with GridSpec fields: backbones, tasks, methods, dropout, m, seeds, ...")
    grid_parser.add_argument("--executor", choices=("local", "ray"), default="local",
                             help="Run here, one after another, or hand runs to Ray.")
    grid_parser.add_argument("--ray-address", default=None, help="A Ray cluster address (default: start a local Ray).")
    for sub in (run_parser, grid_parser):
        sub.add_argument("--profile", default="cli", help="Store records under results/<profile>/ (default: cli).")
        sub.add_argument("--results", default=None, help="Store records under this folder instead.")
        sub.add_argument("--retry-failed", action="store_true", help="Run again runs whose record says failed.")
        sub.add_argument("--report-to", choices=("none", "tensorboard"), default="none",
                         help="Also show the loss and evaluation points live in TensorBoard, under "
                              "<results>/tensorboard/<run hash>/ (records are the same either way). Default: none.")
    reproduce_parser = commands.add_parser(
        "reproduce", help="Train every run of a profile, compare with its committed reference, render the notebooks.")
    reproduce_parser.add_argument("--profile", default="quick", help="quick (default), cpu, offline, paper or smoke.")
    reproduce_parser.add_argument("--notebook", action="append", default=[], help="Only this notebook (repeatable).")
    mode = reproduce_parser.add_mutually_exclusive_group()
    mode.add_argument("--from-reference", action="store_true",
                      help="Train nothing: render the notebooks from results/<profile>/reference (make report).")
    mode.add_argument("--accept", action="store_true",
                      help="After training, make the fresh runs the profile's reference (make reference).")
    mode.add_argument("--extend", action="store_true",
                      help="Train only the runs results/<profile>/reference lacks and add each finished one to it "
                           "(also on Ctrl-C); render from it once complete (make extend: a reference built over "
                           "several sittings).")
    for sub in (grid_parser, reproduce_parser):
        sub.add_argument("--pack", type=int, default=None, metavar="R",
                         help="Train up to R compatible runs together (default: 8 on CUDA, each run alone on CPU).")
        sub.add_argument("--no-pack", dest="pack", action="store_const", const=1, help="Train every run alone.")
    glance_parser = commands.add_parser(
        "glance", help="Print the paper's claims judged on the finished runs of a profile (notebook 05 writes the "
                       "table).")
    glance_parser.add_argument("--profile", default="quick", help="quick (default), cpu, offline, paper or smoke.")
    glance_parser.add_argument("--reference", action="store_true",
                               help="Read results/<profile>/reference instead of the working store.")
    glance_parser.add_argument("--markdown", action="store_true",
                               help="Print the README's \"Results at a glance\" block for these runs.")
    glance_parser.add_argument("--write-docs", action="store_true",
                               help="Rewrite the blocks of README.md and docs/TASKS.md computed from the committed "
                                    "references (glance, learnability gate).")
    return parser


@contextlib.contextmanager
def _ctrl_c_deferred():
    """Hold Ctrl-C until the block ends (the yielded list then holds True): a KeyboardInterrupt raised inside
    torch's C++ extension while it initializes aborts the process ("terminate called after throwing an instance
    of 'pybind11::error_already_set'") instead of reaching ``main``. The imports take a couple of seconds."""
    pressed: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(True))
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        with _ctrl_c_deferred() as pressed:  # building the parser imports torch: see _ctrl_c_deferred
            parser = build_parser()
        if pressed:
            raise KeyboardInterrupt
        args = parser.parse_args(argv)
        if args.command == "list":
            print(_listing())
            return 0
        return {"run": _command_run, "grid": _command_grid, "reproduce": _command_reproduce,
                "glance": _command_glance}[args.command](args)
    except (ValueError, ImportError, FileNotFoundError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"superpos: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk or a results folder turned read-only part-way
        from .engine.grid import is_storage_error, storage_message

        if not is_storage_error(error):
            raise
        root = getattr(args, "results", None) or f"results/{getattr(args, 'profile', None) or ''}"
        print(f"superpos: error: {storage_message(error, root)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        # Interrupted (engine.grid) carries the line saying what was kept; a bare Ctrl-C came before any run.
        said = error.args[0] if error.args and isinstance(error.args[0], str) else None
        print(f"superpos: {said or 'interrupted before training started; nothing was saved'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # a Ctrl-C in the instant before main() or after it returned
        print("superpos: interrupted", file=sys.stderr)
        sys.exit(130)
