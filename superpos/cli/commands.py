"""The commands: each takes the parsed arguments and returns the exit status (0 done, 1 a run failed).

Bad input raises ``ValueError`` with one line (``field: message``), which ``main`` prints (status 2). The
packages behind a command (torch among them) are imported here, when it runs, not when the parser is built.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def store_from(args):
    """The results store a command writes or reads: ``--results``, else ``results/<--profile>/``."""
    from ..engine import ResultsStore
    from ..paths import results_root

    return ResultsStore(results_root(args.results, args.profile))


def command_list(args) -> int:
    from .listing import listing

    print(listing())
    return 0


def command_run(args) -> int:
    from ..engine import run
    from ..engine.grid import Interrupted, interrupted_message
    from .flags import run_config_from

    config = run_config_from(args)
    store = store_from(args)
    try:
        record = run(config, store, retry_failed=args.retry_failed,  # checks the store is writable when it must train
                     report_to=args.report_to)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_message(store, config)) from None
    where = store.record_path(record["hash"])
    state = "cached" if record.get("cached") else record["status"]
    if record["status"] != "done":
        print(f"{config.label()}: {state}: {record.get('reason') or 'no reason recorded'}; record {where}")
        return 1
    print(f"{config.label()}: {state}; {best_points(record)}; record {where}")
    return 0


def best_points(record: dict) -> str:
    """The test scores of a finished run, each at the validation point that selected it: ``strict 0.0 % at step
    5 (invalid labels 100.0 %); lenient 21.5 % at step 10 (invalid labels 57.5 %)``. Strict is the paper's rule
    (one invalid label scores 0); the lenient best is read at its own best point, usually another step."""
    from ..engine.frame import best_lenient_point

    best = record.get("best") or {}
    lenient = best_lenient_point(record) or {}  # older records: rebuilt from the history
    strict_test, lenient_test = best.get("test") or {}, lenient.get("test") or {}
    return (f"strict {_percent(strict_test.get('score'))} at step {_step(best.get('step'))} "
            f"(invalid labels {_percent(strict_test.get('invalid_rate'), 100)}); "
            f"lenient {_percent(lenient_test.get('lenient_score'))} at step {_step(lenient.get('step'))} "
            f"(invalid labels {_percent(lenient_test.get('invalid_rate'), 100)})")


def _percent(value, scale: float = 1.0) -> str:
    """A score (already in points) or a rate (``scale=100``) in percent, one decimal (records keep every digit);
    ``-`` where there is none."""
    return "-" if value is None else f"{value * scale:.1f} %"


def _step(value) -> str:
    return "-" if value is None else str(value)


def read_grid_file(path: str | Path):
    """A grid file's :class:`GridSpec` (:meth:`GridSpec.from_file_data` checks its shape), with no
    ``task_budget`` entry for a task the grid does not run (likely a typo or a leftover)."""
    from ..engine import GridSpec

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"grid: no such file {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"grid: {path} is not valid JSON ({error})") from None
    except UnicodeDecodeError:
        raise ValueError(f"grid: {path} is not a text (JSON) file") from None
    spec = GridSpec.from_file_data(data, str(path))
    outside = spec.tasks_outside()
    if outside:
        raise ValueError(f"task_budget: {', '.join(map(repr, outside))} not among the grid's tasks "
                         f"({', '.join(spec.tasks + spec.attempt_sources)}); add the task or remove the entry")
    return spec


def command_grid(args) -> int:
    from ..engine import RunConfig, expand, run_grid

    spec = read_grid_file(args.file)
    expand(spec)  # every name and field checked before anything runs
    result = run_grid(spec, store_from(args), retry_failed=args.retry_failed, executor=args.executor,
                      ray_address=args.ray_address, report_to=args.report_to, pack=args.pack)
    for record in result.records:  # why, in one line each (the record keeps the whole reason)
        if record["status"] != "done":
            reason = (record.get("reason") or "no reason recorded").strip().splitlines()[0]
            print(f"  failed: {RunConfig.from_dict(record['config']).label()}: {reason}", file=sys.stderr)
    return 0 if result.failed == 0 else 1


def command_reproduce(args) -> int:
    try:
        from ..reproduce import reproduce

        return reproduce(args.profile, notebooks=args.notebook or None, from_reference=args.from_reference,
                         accept=args.accept, extend=args.extend, pack=args.pack)
    except KeyboardInterrupt as error:
        if error.args:  # already says what was kept (a run's checkpoint, a notebook's partial copy)
            raise
        raise KeyboardInterrupt(f"interrupted; finished runs are kept in results/{args.profile}/ and the same "
                                "command goes on from them") from None


def command_glance(args) -> int:
    from ..engine import ResultsStore, load_records
    from ..paths import reference_dir, shown_path
    from ..profiles import get_profile, profile_configs
    from ..report import claim_summary, glance

    if args.write_docs:  # every generated block of README.md and docs/TASKS.md, from the committed references
        from ..report.generated import write_docs

        print(f"glance: wrote {', '.join(write_docs()) or 'no block'}")
        return 0
    store = (ResultsStore(reference_dir(args.profile), read_only=True) if args.reference
             else ResultsStore(profile=args.profile))
    configs = profile_configs(args.profile)
    runs = load_records(store, configs, only_done=True)
    if runs.empty:
        raise ValueError(f"glance: no finished run of profile {args.profile} in {store.root}")
    gated = bool(get_profile(args.profile).gate_tasks)  # a profile with a learnability gate tests only its passers
    # Printed only: notebook 05 writes the profile's glance table, from every run the profile asks for.
    if args.markdown:  # the README's "Results at a glance" block, as the tests check it
        from ..report.glance import glance_markdown

        print(glance_markdown(runs, wanted=len(configs), gate=gated), end="")
        return 0
    print(f"glance: profile {args.profile}, {len(runs)} of its {len(configs)} runs finished in {shown_path(store.root)}; "
          "paired differences of the lenient test score over seeds (points; positive: the paper's way), 95 % "
          "t-intervals, Holm-corrected p within each claim")
    print(claim_summary(runs_table := glance(runs, gate=gated)).to_string(index=False))
    print(runs_table.to_string(index=False))
    return 0


def find_record(run: str, args) -> tuple[dict, object]:
    """``(record, its store)`` for a record file's path, or for a run hash (or a unique start of one) in the store
    ``--results``/``--profile`` names. A record file's store is the folder above its ``records/`` (unless
    ``--results`` names one)."""
    import re

    from ..engine import ResultsStore
    from ..engine.store import is_run_hash, record_problem
    from ..paths import shown_path

    path = Path(run)
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise ValueError(f"export: no such record file {path}")
        try:
            record = json.loads(path.read_text())
        except ValueError as error:  # UnicodeDecodeError included
            raise ValueError(f"export: {path} is not a record (not JSON: {str(error).splitlines()[0]})") from None
        problem = record_problem(record, record.get("hash") if isinstance(record, dict) else None)
        if problem is not None:
            raise ValueError(f"export: {path} is not a record ({problem})")
        if args.results:
            return record, ResultsStore(Path(args.results))
        parent = path.resolve().parent
        return record, (ResultsStore(parent.parent) if parent.name == "records" else store_from(args))
    store = store_from(args)
    if not is_run_hash(run) and re.fullmatch(r"[0-9a-f]{1,15}", run):  # the start of a hash, as git takes one
        found = sorted(p.stem for p in store.records_dir.glob(f"{run}*.json") if is_run_hash(p.stem))
        if len(found) > 1:
            raise ValueError(f"export: {run!r} starts {len(found)} run hashes in {shown_path(store.root)} "
                             f"({', '.join(found[:4])}{', ...' if len(found) > 4 else ''}); give more of it")
        run = found[0] if found else run
    record = store.get(run) if is_run_hash(run) else None
    if record is None:
        raise ValueError(f"export: no run {run!r} in {shown_path(store.root)} (a run hash or a record file; "
                         "--results or --profile names the store)")
    return record, store


def command_export(args) -> int:
    from ..export import export_run
    from ..paths import shown_path

    record, store = find_record(args.run, args)
    written = export_run(record, args.folder, store=store)
    folder = Path(written) if isinstance(written, (str, Path)) else Path(args.folder)
    print(f"export: run {record['hash']}: PEFT adapter in {shown_path(folder)}")
    return 0


def command_preflight(args) -> int:
    from ..preflight import preflight

    return preflight(args.profile, device=args.device, pack=args.pack)


COMMANDS = {"list": command_list, "run": command_run, "grid": command_grid, "reproduce": command_reproduce,
            "glance": command_glance, "export": command_export, "preflight": command_preflight}
