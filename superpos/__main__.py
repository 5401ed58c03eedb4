"""Command line: ``python -m superpos {list,run,grid,reproduce}``.

Bad input exits with status 2 and one line on stderr, before any model loads.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


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


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    from .engine import RunConfig

    for field in dataclasses.fields(RunConfig):
        if field.name in ("method_config", "sources"):
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, default=None, action=argparse.BooleanOptionalAction, help=field.metadata["help"])
        else:
            parser.add_argument(flag, default=None, type=_value, metavar=field.name.upper(), help=field.metadata["help"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="A method-config field, e.g. --set m=64 --set softmax=true (repeatable).")
    parser.add_argument("--source", action="append", default=[], metavar="HASH",
                        help="ATTEMPT: a finished source-prompt run's hash (repeatable).")


def _store_from(args):
    from .engine import ResultsStore
    from .paths import results_dir

    return ResultsStore(Path(args.results) if args.results else results_dir() / args.profile)


def _command_run(args) -> int:
    from .engine import RunConfig, run

    values = {key: value for key, value in vars(args).items()
              if key in {f.name for f in dataclasses.fields(RunConfig)} and value is not None}
    method_config = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        method_config[key] = _value(value)
    config = RunConfig(method_config=method_config, sources=args.source, **values).resolved()
    store = _store_from(args)
    record = run(config, store, retry_failed=args.retry_failed)  # checks the store is writable when it must train
    best = record.get("best") or {}
    test = best.get("test") or {}
    where = store.record_path(record["hash"])
    state = "cached" if record.get("cached") else record["status"]
    print(f"{config.label()}: {state}; score {test.get('score')} (lenient {test.get('lenient_score')}, "
          f"invalid {test.get('invalid_rate')}) at step {best.get('step')}; record {where}")
    return 0 if record["status"] == "done" else 1


def _command_grid(args) -> int:
    from .engine import GridSpec, run_grid

    path = Path(args.file)
    if not path.is_file():
        raise ValueError(f"grid: no such file {path}")
    try:
        spec = GridSpec.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        raise ValueError(f"grid: {path} is not valid JSON ({error})") from None
    from .engine import expand

    expand(spec)  # every name and field checked before anything runs
    result = run_grid(spec, _store_from(args), retry_failed=args.retry_failed, executor=args.executor,
                      ray_address=args.ray_address, pack=args.pack)
    return 0 if result.failed == 0 else 1


def _command_reproduce(args) -> int:
    from .reproduce import reproduce

    return reproduce(args.profile, notebooks=args.notebook or None, from_reference=args.from_reference,
                     accept=args.accept, pack=args.pack)


def _command_glance(args) -> int:
    from .engine import ResultsStore, load_records
    from .paths import reference_dir
    from .profiles import profile_configs
    from .report import caption, glance, publish_table

    store = ResultsStore(reference_dir(args.profile) if args.reference else None, profile=args.profile)
    configs = profile_configs(args.profile)
    runs = load_records(store, configs, only_done=True)
    if runs.empty:
        raise ValueError(f"glance: no finished run of profile {args.profile} in {store.root}")
    table = glance(runs)
    publish_table(table, "glance", args.profile, title="The paper's claims, judged on these runs",
                  caption=caption(args.profile, runs, f"{len(runs)} of the profile's {len(configs)} runs; mean ± std "
                                                      "over seeds of the strict score (%), difference in points "
                                                      "(positive: the paper's way)"))
    print(table.to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m superpos", description="Soft prompt tuning, reproducibly.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_listing())
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
    reproduce_parser = commands.add_parser(
        "reproduce", help="Train every run of a profile, compare with its committed reference, render the notebooks.")
    reproduce_parser.add_argument("--profile", default="quick", help="quick (default), cpu, offline, paper or smoke.")
    reproduce_parser.add_argument("--notebook", action="append", default=[], help="Only this notebook (repeatable).")
    mode = reproduce_parser.add_mutually_exclusive_group()
    mode.add_argument("--from-reference", action="store_true",
                      help="Train nothing: render the notebooks from results/<profile>/reference (make report).")
    mode.add_argument("--accept", action="store_true",
                      help="After training, make the fresh runs the profile's reference (make reference).")
    for sub in (grid_parser, reproduce_parser):
        sub.add_argument("--pack", type=int, default=None, metavar="R",
                         help="Train up to R compatible runs together (default: 8 on CUDA, each run alone on CPU).")
        sub.add_argument("--no-pack", dest="pack", action="store_const", const=1, help="Train every run alone.")
    glance_parser = commands.add_parser(
        "glance", help="Judge the paper's claims on the finished runs of a profile (also part of notebook 05).")
    glance_parser.add_argument("--profile", default="quick", help="quick (default), cpu, offline, paper or smoke.")
    glance_parser.add_argument("--reference", action="store_true",
                               help="Read results/<profile>/reference instead of the working store.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            print(_listing())
            return 0
        return {"run": _command_run, "grid": _command_grid, "reproduce": _command_reproduce,
                "glance": _command_glance}[args.command](args)
    except (ValueError, ImportError, FileNotFoundError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"superpos: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("superpos: interrupted; the run's checkpoint is saved and the next call resumes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
