"""Grids: the cross product tasks x methods x dropout x m x seeds x backbones, run against a store.

A grid is a :class:`GridSpec` (from a notebook's parameters or a JSON file). ``expand`` turns it
into run configs in dependency order (ATTEMPT's source-prompt runs first); ``run_grid`` runs what
the store does not have yet, with one progress bar over runs and one inside the current run
(tqdm on stderr; ``TQDM_DISABLE=1`` silences both), and ends with a one-line summary.
"""
from __future__ import annotations

import dataclasses
import functools
import errno
import sys
from collections.abc import Mapping
from itertools import product
from typing import Any, Callable

from ..config import ConfigBase, coerce_field, coerce_value, option, require
from .config import RunConfig
from .record import GridResult, failed_record
from .files import is_storage_error
from .store import ResultsStore


@dataclasses.dataclass
class GridSpec(ConfigBase):
    """What to run. Each list is one axis of the cross product."""

    backbones: list = option(["smollm2-135m"], help="Backbone names.")
    tasks: list = option(["bbc-topic"], help="Task names.")
    methods: list = option(["superpos"], help="Method names, or {'method': name, 'config': {...}} for a variant; "
                                              "an entry's optional 'dropout', 'backbones', 'tasks' or 'seeds' list "
                                              "replaces that axis for it.")
    dropout: list = option([False], help="Dropout settings of the frozen backbone.")
    m: list = option([], help="Values of m (SuperPos: sampled tokens) crossed with every method whose config has an "
                              "m; empty keeps each one's default.")
    seeds: list = option([0], help="Seeds.")
    attempt_sources: list = option([], help="ATTEMPT: tasks whose simple-prompt runs give the source prompts.")
    budget: dict = option({}, help="RunConfig fields shared by every run (epochs, batch_size, eval_every, ...).")
    task_budget: dict = option({}, help="Per-task overrides of budget: {task: {field: value}}.")

    def __post_init__(self):
        super().__post_init__()  # the axes are lists, budget and task_budget dicts (a string is refused)
        for axis in ("backbones", "tasks", "methods", "dropout", "seeds"):
            require(len(getattr(self, axis)) >= 1, axis, "must name at least one value")
        for axis in ("backbones", "tasks", "attempt_sources"):
            for value in getattr(self, axis):
                require(isinstance(value, str) and value, axis, f"entries must be names (strings), got {value!r}")
        # A task's every spelling ("SST-2", "sst2") is one task: its canonical name, as RunConfig.resolved() gives it,
        # so that task_budget entries, attempt_sources and method entries' own tasks meet the grid's tasks.
        self.tasks = [task_key(task) for task in self.tasks]
        self.attempt_sources = [task_key(task) for task in self.attempt_sources]
        self.methods = [_check_method_entry(index, entry) for index, entry in enumerate(self.methods)]
        self.dropout = [coerce_field(RunConfig, "dropout", value, "dropout") for value in self.dropout]
        self.seeds = [coerce_field(RunConfig, "seed", value, "seeds") for value in self.seeds]
        self.m = [coerce_value("m", int, value) for value in self.m]
        self.budget = _check_budget(self.budget, "budget")
        task_budget = {}
        for task, values in self.task_budget.items():
            require(isinstance(values, Mapping), f"task_budget.{task}",
                    f"must be an object of RunConfig fields, got {values!r}")
            key = task_key(task)
            require(key not in task_budget, "task_budget", f"{task!r} names the same task as another entry ({key})")
            task_budget[key] = _check_budget(values, f"task_budget.{task}")
        self.task_budget = task_budget
        uses_attempt = any(_method_name(m) == "attempt" for m in self.methods)
        require(not uses_attempt or self.attempt_sources, "attempt_sources",
                "ATTEMPT in a grid needs attempt_sources (the tasks that give source prompts)")

    def tasks_outside(self) -> list[str]:
        """``task_budget`` entries for tasks this grid does not run (neither in ``tasks`` nor ``attempt_sources``).

        Allowed in a ``GridSpec`` (the profiles share one ``task_budget`` among notebooks that run fewer tasks);
        a grid file given to ``python -m superpos grid`` may not have them (most likely a typo or a leftover)."""
        return [task for task in self.task_budget if task not in self.tasks and task not in self.attempt_sources]

    #: Fields a grid file must name: without them it would run the defaults' grid (bbc-topic x superpos), which a
    #: file saying only ``{"seeds": [0]}`` or ``{"budget": {}}`` surely did not mean.
    FILE_REQUIRED = ("tasks", "methods")

    @classmethod
    def from_file_data(cls, data: Any, where: str = "the grid file") -> "GridSpec":
        """A grid spec from a grid file's parsed JSON: an object naming at least ``tasks`` and ``methods``
        (``ValueError`` in one line otherwise), then as :meth:`from_dict`."""
        if not isinstance(data, Mapping):
            kind = {list: "a list", str: "a string", type(None): "null"}.get(type(data), "a number")
            raise ValueError(f"grid: {where} must hold a JSON object of GridSpec fields ({{\"tasks\": [...], "
                             f"\"methods\": [...], ...}}), got {kind}")
        if not data:
            raise ValueError(f"grid: {where} is an empty object; name at least tasks and methods (an empty grid would "
                             "run every default)")
        missing = [key for key in cls.FILE_REQUIRED if key not in data]
        if missing:
            raise ValueError(f"grid: {where} names no {' and no '.join(missing)}; a grid file names them (e.g. "
                             "\"tasks\": [\"bbc-topic\"], \"methods\": [\"superpos\"]); it never runs the defaults")
        return cls.from_dict(data)


#: RunConfig fields a grid's budget may set: all but the grid's axes.
AXIS_FIELDS = ("backbone", "task", "method", "method_config", "dropout", "seed")
#: Axes a method entry may replace for itself, each with the RunConfig field its values fill.
ENTRY_AXES = {"dropout": "dropout", "backbones": "backbone", "tasks": "task", "seeds": "seed"}
METHOD_ENTRY_KEYS = ("method", "config", *ENTRY_AXES)


def task_key(task: Any) -> Any:
    """A task's canonical name (``"SST-2"`` -> ``"sst2"``), or ``task`` unchanged when no task has that name
    (``expand`` then reports it)."""
    from ..tasks import TaskError, canonical_name

    try:
        return canonical_name(task) if isinstance(task, str) else task
    except TaskError:
        return task


def _check_budget(values: Mapping, where: str) -> dict:
    fields = [f.name for f in dataclasses.fields(RunConfig) if f.name not in AXIS_FIELDS]
    checked = {}
    for key, value in values.items():
        require(key in fields, where, f"unknown or axis field {key!r}; a budget sets {', '.join(fields)}")
        checked[key] = coerce_field(RunConfig, key, value, f"{where}.{key}")
    return checked


def _check_method_entry(index: int, entry: Any) -> str | dict:
    """A ``methods`` entry: a name, or ``{"method": name, "config": {...}}`` with optional own ``dropout``,
    ``backbones``, ``tasks`` or ``seeds`` lists."""
    where = f"methods[{index}]"
    if isinstance(entry, str):
        return entry
    require(isinstance(entry, Mapping), where, f"must be a method name or an object with \"method\", got {entry!r}")
    unknown = sorted(str(key) for key in entry if key not in METHOD_ENTRY_KEYS)
    require(not unknown, where, f"unknown key(s) {', '.join(unknown)}; an entry has {', '.join(METHOD_ENTRY_KEYS)}")
    require("method" in entry, where, f"names no \"method\" (e.g. {{\"method\": \"superpos\", \"config\": {{...}}}})")
    require(isinstance(entry["method"], str), f"{where}.method", f"must be a method name, got {entry['method']!r}")
    checked = dict(entry)
    if "config" in entry:
        require(isinstance(entry["config"], Mapping), f"{where}.config",
                f"must be an object of method fields, got {entry['config']!r}")
        checked["config"] = dict(entry["config"])
    for axis, field in ENTRY_AXES.items():
        if axis in entry:
            values = entry[axis] if isinstance(entry[axis], (list, tuple)) else [entry[axis]]
            require(len(values) >= 1, f"{where}.{axis}", "must name at least one value")
            checked[axis] = [coerce_field(RunConfig, field, value, f"{where}.{axis}") for value in values]
            if axis == "tasks":
                checked[axis] = [task_key(task) for task in checked[axis]]
    return checked


def _method_name(entry: str | dict) -> str:
    return entry if isinstance(entry, str) else entry["method"]


def _method_variants(entry: str | dict, m_values: list) -> list[tuple[str, dict]]:
    name = _method_name(entry)
    config = {} if isinstance(entry, str) else dict(entry.get("config", {}))
    if m_values and "m" not in config and _has_field(name, "m"):
        return [(name, {**config, "m": m}) for m in m_values]
    return [(name, config)]


def _has_field(method: str, field: str) -> bool:
    """Whether ``method``'s config has ``field`` (an unknown method has none; ``expand`` names it)."""
    from ..methods import METHODS

    spec = METHODS.get(method)
    return spec is not None and field in {f.name for f in dataclasses.fields(spec.config_class)}


def _entry_axis(entry: str | dict, axis: str, default: list) -> list:
    """One axis for one method entry: its own list when it has one (full fine-tuning only with dropout, as in
    Table 1; an ablation on fewer tasks; a row on one more backbone), else the grid's axis."""
    if isinstance(entry, dict) and axis in entry:
        values = entry[axis]
        return list(values) if isinstance(values, (list, tuple)) else [values]
    return list(default)


def _index(axis: list, value) -> int:
    """Position of ``value`` on a grid axis; values an entry adds come after the axis's own."""
    return axis.index(value) if value in axis else len(axis)


def expand(spec: GridSpec) -> list[RunConfig]:
    """Every run the grid asks for, sources before the ATTEMPT runs that need them; no duplicates.

    Resolves every config, so an unknown name or a bad field fails here, before any model loads.
    """
    from ..tasks import TASKS

    for task in spec.task_budget:
        require(task in TASKS, "task_budget", f"unknown task {task!r}; known: {', '.join(TASKS)}")
    runs: dict[str, RunConfig] = {}

    def add(config: RunConfig) -> str:
        config = config.resolved()
        key = config.run_hash()
        runs.setdefault(key, config)
        return key

    pairs = [(backbone, task, entry) for entry in spec.methods for backbone in _entry_axis(entry, "backbones", spec.backbones)
             for task in _entry_axis(entry, "tasks", spec.tasks)]
    pairs.sort(key=lambda item: (_index(spec.backbones, item[0]), _index(spec.tasks, item[1])))  # backbone, task-major
    for backbone, task, method_entry in pairs:
        for dropout, seed in product(_entry_axis(method_entry, "dropout", spec.dropout),
                                     _entry_axis(method_entry, "seeds", spec.seeds)):
            budget = {**spec.budget, **spec.task_budget.get(task, {})}
            for method, method_config in _method_variants(method_entry, spec.m):
                common = dict(backbone=backbone, dropout=dropout, seed=seed, **budget)
                if method == "attempt":
                    if task in spec.attempt_sources:
                        continue  # the paper does not evaluate ATTEMPT on its own source tasks (§4.4)
                    # A source prompt is trained on its source task's own budget (whatever the target's input
                    # length or steps), with the target's backbone, dropout and seed: one set per backbone, dropout
                    # and seed serves every target task.
                    sources = [add(RunConfig(task=source, method="simple", backbone=backbone, dropout=dropout,
                                             seed=seed, **{**spec.budget, **spec.task_budget.get(source, {})}))
                               for source in spec.attempt_sources]
                    add(RunConfig(task=task, method=method, method_config=method_config, sources=sources, **common))
                else:
                    add(RunConfig(task=task, method=method, method_config=method_config, **common))
    return list(runs.values())


def run_grid(spec: GridSpec | dict, store: ResultsStore, *, retry_failed: bool = False, executor: str = "local",
             ray_address: str | None = None, progress: bool = True,
             run_fn: Callable[..., dict] | None = None, report_to: str = "none",
             pack: int | None = None) -> GridResult:
    """Run every config of ``spec`` that ``store`` lacks; a failing run is recorded and the grid goes on.
    ``report_to`` and ``pack``: see :func:`run_configs`."""
    spec = spec if isinstance(spec, GridSpec) else GridSpec.from_dict(spec)
    return run_configs(expand(spec), store, retry_failed=retry_failed, executor=executor, ray_address=ray_address,
                       progress=progress, run_fn=run_fn, report_to=report_to, pack=pack)


def run_configs(configs: list[RunConfig], store: ResultsStore, *, retry_failed: bool = False, executor: str = "local",
                ray_address: str | None = None, progress: bool = True,
                run_fn: Callable[..., dict] | None = None, report_to: str = "none",
                pack: int | None = None, on_records: Callable[[list[dict]], None] | None = None) -> GridResult:
    """Run every config the store lacks, in the given order (dependencies first, as :func:`expand` gives
    them); a failing run is recorded and the others go on. Ends with one summary line on stderr.
    ``on_records`` is called with the records of each run or packed group as it ends (local executor only).

    ``pack``: train up to this many compatible runs together (``superpos.engine.packed``); 1 trains every run
    alone; None (the default) packs on CUDA only, where it pays. A custom ``run_fn`` runs every config alone.
    ``report_to="tensorboard"``: each run trained alone mirrors its curves to TensorBoard (:mod:`.reporting`).
    """
    from tqdm.auto import tqdm

    from .packed import check_pack, plan_units, run_group
    from .train import run as run_one

    check_pack(pack)
    if not all(store.is_done(config.run_hash()) for config in configs):  # reading needs no write access
        store.ensure_writable()
    if executor == "ray":
        from .ray_executor import run_configs_on_ray

        result = run_configs_on_ray(configs, store, address=ray_address, retry_failed=retry_failed, progress=progress,
                                    pack=pack)
        print(result.summary(), file=sys.stderr)
        return result
    require(executor == "local", "executor", f"must be 'local' or 'ray', got {executor!r}")
    units = [[i] for i in range(len(configs))] if run_fn is not None else plan_units(configs, pack)
    run_fn = run_fn or functools.partial(run_one, report_to=report_to)
    records: list[dict | None] = [None] * len(configs)
    from .console import tqdm_disabled

    progress = progress and not tqdm_disabled()
    bar = tqdm(total=len(configs), desc="runs", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for unit in units:
        first = configs[unit[0]]
        bar.set_postfix_str(first.label() + (f" +{len(unit) - 1} packed" if len(unit) > 1 else ""), refresh=False)
        try:
            if len(unit) > 1:
                found = run_group([configs[i] for i in unit], store, retry_failed=retry_failed, progress=progress)
            else:
                found = [run_fn(first, store, retry_failed=retry_failed, progress=progress)]
        except KeyboardInterrupt:
            bar.close()
            kept = sum(store.is_done(config.run_hash()) for config in configs)  # this grid's, in any order
            raise Interrupted(interrupted_message(store, first, kept=kept)) from None
        except OSError as error:
            if is_storage_error(error):  # every later run would fail the same way: stop, in one line
                bar.close()
                raise StorageError(storage_message(error, store.root)) from error
            found = [failed_unless_done(configs[i], error, store) for i in unit]
        except Exception as error:  # one run's failure must not end the grid
            found = [failed_unless_done(configs[i], error, store) for i in unit]
        for index, record in zip(unit, found):
            records[index] = record
        if on_records is not None:
            on_records(found)
        bar.update(len(unit))
    bar.close()
    result = GridResult(records=records)
    for record in records:
        result.count(record)
    print(result.summary(), file=sys.stderr)
    return result


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with one line saying what was kept (``args[0]``); the CLI prints it and exits with 130."""


class StorageError(ValueError):
    """The disk is full, or the results folder read-only or not ours, part-way through; one line (``args[0]``)."""


def storage_message(error: OSError, root) -> str:
    """One line: what could not be written, where, why, and that the same command resumes."""
    what = f"{error.filename}" if error.filename else f"the results folder {root}"
    why = error.strerror or type(error).__name__
    hint = {errno.ENOSPC: "free some disk space", errno.EROFS: "use a writable folder (--results)"}.get(
        error.errno, "fix the folder's permissions or use another one (--results)")
    return (f"cannot write {what} ({why}); {hint}, then run the same command again: finished runs are kept "
            f"and an interrupted run resumes from its last checkpoint")


def interrupted_message(store: ResultsStore, config: RunConfig | None, kept: int = 0) -> str:
    """What Ctrl-C left: the current run's checkpoint (its step) if it saved one, and how many runs are kept."""
    finished = f"; {kept} finished run{'s' if kept != 1 else ''} kept in {store.root}" if kept else ""
    if config is None:
        return f"interrupted before a run started{finished}"
    saved = store.checkpoints(config.run_hash())
    if not saved:
        return (f"interrupted before {config.label()} saved a checkpoint (nothing of it is kept; the same command "
                f"starts it again){finished}")
    step, folder = saved[0]
    return (f"interrupted; {config.label()} is saved at step {step} in {folder} and the same command "
            f"resumes it{finished}")


def failed_unless_done(config: RunConfig, error: BaseException, store: ResultsStore) -> dict[str, Any]:
    """The stored record of a run that finished before ``error`` (in a packed group), else a failed record, stored."""
    if store.is_done(run_hash := config.run_hash()):
        return {**store.get(run_hash), "cached": False}
    store.put(record := failed_record(config, error))
    return record
