"""Command line: ``python -m superpos {list,run,grid,reproduce,glance,export,preflight}``.

Bad input exits with status 2 and one line on stderr, before any model loads: a value of the wrong type
(``--seed 1.5``), an unknown name, a bad grid file, a local model folder without weights, and also a disk
that fills up or a results folder that turns read-only part-way (re-running the same command resumes).
Ctrl-C exits with status 130 and one line saying what was kept. Any other error is a bug: one line saying so,
status 1; ``--debug`` shows the traceback of any error.

``--version`` and ``--help`` import no torch: ``run``'s flags, generated from the configs (which do), are added
when ``run`` is parsed (:mod:`.flags`), and each command imports what it needs when it runs (:mod:`.commands`).
"""
from __future__ import annotations

import sys

try:  # a Ctrl-C while these import is one line too, as in main()
    import argparse
    import contextlib
    import signal
    import threading
    import traceback
    from collections.abc import Callable
except KeyboardInterrupt:
    print("superpos: interrupted", file=sys.stderr)
    sys.exit(130)

from . import listing
from .commands import COMMANDS
from .flags import method_fields

__all__ = ["build_parser", "main", "method_fields"]


class _UsageError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``superpos: error: ...``, exit status 2), like every other bad input.

    ``fill(parser)``, when given, adds the parser's arguments the first time it parses or shows its help:
    ``run``'s come from the config dataclasses, whose modules import torch."""

    def __init__(self, *args, fill: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._fill = fill

    def _filled(self) -> None:
        fill, self._fill = self._fill, None
        if fill is not None:
            fill(self)

    def parse_known_args(self, args=None, namespace=None):
        self._filled()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._filled()
        return super().format_usage()

    def format_help(self) -> str:
        self._filled()
        return super().format_help()

    def error(self, message: str):
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="cli", help="Store records under results/<profile>/ (default: cli).")
    parser.add_argument("--results", default=None, help="Store records under this folder instead.")


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    _store_arguments(parser)
    parser.add_argument("--retry-failed", action="store_true", help="Run again runs whose record says failed.")
    parser.add_argument("--report-to", choices=("none", "tensorboard"), default="none",
                        help="Also show the loss and evaluation points live in TensorBoard, under "
                             "<results>/tensorboard/<run hash>/ (records are the same either way). Default: none.")


def _fill_run(parser: argparse.ArgumentParser) -> None:
    from .flags import add_run_arguments

    add_run_arguments(parser)
    _training_arguments(parser)


def _pack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pack", type=int, default=None, metavar="R",
                        help="Train up to R compatible runs together (default: 8 on CUDA, each run alone on CPU).")
    parser.add_argument("--no-pack", dest="pack", action="store_const", const=1, help="Train every run alone.")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; cheap (no torch) until ``run``'s arguments are parsed or shown."""
    from .. import __version__

    names = listing.listing()
    parser = _Parser(prog="python -m superpos", description="Soft prompt tuning, reproducibly.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=names)
    parser.add_argument("--version", action="version", version=f"superpos {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="Show the traceback of an error (an unexpected one otherwise prints one line).")
    commands = parser.add_subparsers(dest="command", required=True)
    subparsers = [commands.add_parser("list", help="Print the available backbones, methods and tasks.")]

    run_parser = commands.add_parser("run", help="Run one configuration (skipped when its record exists).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=names,
                                     fill=_fill_run)
    grid_parser = commands.add_parser("grid", help="Run a grid from a JSON file (GridSpec fields).",
                                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=names)
    grid_parser.add_argument("file", help="JSON with GridSpec fields: backbones, tasks, methods, dropout, m, seeds, ...")
    grid_parser.add_argument("--executor", choices=("local", "ray"), default="local",
                             help="Run here, one after another, or hand runs to Ray.")
    grid_parser.add_argument("--ray-address", default=None, help="A Ray cluster address (default: start a local Ray).")
    _training_arguments(grid_parser)
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
        _pack_arguments(sub)
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
    export_parser = commands.add_parser(
        "export", help="Write a finished run's prompt as a Hugging Face PEFT prompt-tuning adapter.")
    export_parser.add_argument("run", metavar="RUN",
                               help="The run: its hash (or a unique start of it) in the store, or its record file.")
    export_parser.add_argument("folder", metavar="FOLDER", help="Write adapter_config.json and "
                                                                "adapter_model.safetensors here.")
    _store_arguments(export_parser)
    preflight_parser = commands.add_parser(
        "preflight", help="Check that this machine can train a profile's runs (backbones, data, device memory, "
                          "time), before training them; prints a table.")
    preflight_parser.add_argument("--profile", default="quick", help="quick (default), cpu, offline, paper or smoke.")
    preflight_parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:<i>.")
    _pack_arguments(preflight_parser)  # as reproduce will train them
    subparsers += [run_parser, grid_parser, reproduce_parser, glance_parser, export_parser, preflight_parser]
    for sub in subparsers:  # --debug after the command too; shown once, in the main --help
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
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


def _import_the_stack() -> None:
    """What every command but ``--version``/``--help`` goes on to import (torch, transformers, the engine), here
    where Ctrl-C is held (see ``_ctrl_c_deferred``)."""
    from .. import engine, methods  # noqa: F401


def _asked_for_debug(argv: list[str]) -> bool:
    """``--debug`` anywhere before a ``--``: known before the arguments parse, so that errors while parsing and
    building the parser show their traceback too."""
    return "--debug" in (argv[:argv.index("--")] if "--" in argv else argv)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def main(argv: list[str] | None = None, *, parser_factory: Callable[[], argparse.ArgumentParser] | None = None) -> int:
    """Run the command ``argv`` names (default: ``sys.argv[1:]``) and return its exit status. ``parser_factory``
    builds the parser (default: :func:`build_parser`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _asked_for_debug(argv)
    args = None
    try:
        with _ctrl_c_deferred() as pressed:  # torch imports here (run's flags, then the stack): see _ctrl_c_deferred
            parser = (parser_factory or build_parser)()
            args = parser.parse_args(argv)
            _import_the_stack()
        if pressed:
            raise KeyboardInterrupt
        return COMMANDS[args.command](args)
    except KeyboardInterrupt as error:
        if debug:
            traceback.print_exc()
        # Interrupted (engine.grid) carries the line saying what was kept; a bare Ctrl-C came before any run.
        said = error.args[0] if error.args and isinstance(error.args[0], str) else None
        print(f"superpos: {said or 'interrupted before training started; nothing was saved'}", file=sys.stderr)
        return 130
    except (ValueError, ImportError, FileNotFoundError) as error:  # bad input, a missing optional package
        if debug:
            traceback.print_exc()
        print(f"superpos: error: {_first_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a full disk stays one line; anything else is a bug, said so
        if debug:
            traceback.print_exc()
        if isinstance(error, OSError):
            from ..engine.files import is_storage_error
            from ..engine.grid import storage_message

            if is_storage_error(error):  # a full disk or a results folder turned read-only part-way
                root = getattr(args, "results", None) or f"results/{getattr(args, 'profile', None) or ''}"
                print(f"superpos: error: {storage_message(error, root)}", file=sys.stderr)
                return 2
        said = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"superpos: error: unexpected {type(error).__name__}{': ' + said if said else ''} (a bug; "
              f"{'the traceback is above' if debug else 'run again with --debug for the traceback'})",
              file=sys.stderr)
        return 1
