"""Grids: the cross product tasks x methods x dropout x m x seeds x backbones, run against a store.

A grid is a :class:`GridSpec` (from a notebook's parameters or a JSON file). ``expand`` turns it
into run configs in dependency order (ATTEMPT's source-prompt runs first); ``run_grid`` runs what
the store does not have yet, with one progress bar over runs and one inside the current run
(tqdm on stderr; ``TQDM_DISABLE=1`` silences both), and ends with a one-line summary.
"""
from __future__ import annotations

import dataclasses
import sys
import traceback
from itertools import product
from typing import Any, Callable

from ..config import ConfigBase, option, require
from .config import RunConfig
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
    m: list = option([], help="SuperPos only: values of m (sampled tokens) to cross with; empty keeps the default.")
    seeds: list = option([0], help="Seeds.")
    attempt_sources: list = option([], help="ATTEMPT: tasks whose simple-prompt runs give the source prompts.")
    budget: dict = option({}, help="RunConfig fields shared by every run (epochs, batch_size, eval_every, ...).")
    task_budget: dict = option({}, help="Per-task overrides of budget: {task: {field: value}}.")

    def __post_init__(self):
        for axis in ("backbones", "tasks", "methods", "dropout", "seeds"):
            require(len(getattr(self, axis)) >= 1, axis, "must name at least one value")
        names = set(dataclasses.fields(RunConfig)[i].name for i in range(len(dataclasses.fields(RunConfig))))
        for key in self.budget:
            require(key in names and key not in ("backbone", "task", "method", "method_config", "dropout", "seed"),
                    "budget", f"unknown or axis field {key!r}")
        uses_attempt = any(_method_name(m) == "attempt" for m in self.methods)
        require(not uses_attempt or self.attempt_sources, "attempt_sources",
                "ATTEMPT in a grid needs attempt_sources (the tasks that give source prompts)")


def _method_name(entry: str | dict) -> str:
    return entry if isinstance(entry, str) else entry["method"]


def _method_variants(entry: str | dict, m_values: list) -> list[tuple[str, dict]]:
    name = _method_name(entry)
    config = {} if isinstance(entry, str) else dict(entry.get("config", {}))
    if name == "superpos" and m_values and "m" not in config:
        return [(name, {**config, "m": m}) for m in m_values]
    return [(name, config)]


ENTRY_AXES = ("dropout", "backbones", "tasks", "seeds")


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
                    sources = [add(RunConfig(task=source, method="simple",
                                             **{**common, **spec.task_budget.get(source, {})}))
                               for source in spec.attempt_sources]
                    add(RunConfig(task=task, method=method, method_config=method_config, sources=sources, **common))
                else:
                    add(RunConfig(task=task, method=method, method_config=method_config, **common))
    return list(runs.values())


@dataclasses.dataclass
class GridResult:
    records: list[dict]
    done: int = 0
    cached: int = 0
    failed: int = 0

    def summary(self) -> str:
        return f"grid: {len(self.records)} runs: {self.done} done, {self.cached} cached, {self.failed} failed"


def run_grid(spec: GridSpec | dict, store: ResultsStore, *, retry_failed: bool = False, executor: str = "local",
             ray_address: str | None = None, progress: bool = True,
             run_fn: Callable[..., dict] | None = None, pack: int | None = None) -> GridResult:
    """Run every config of ``spec`` that ``store`` lacks; a failing run is recorded and the grid goes on.
    ``pack``: see :func:`run_configs`."""
    spec = spec if isinstance(spec, GridSpec) else GridSpec.from_dict(spec)
    return run_configs(expand(spec), store, retry_failed=retry_failed, executor=executor, ray_address=ray_address,
                       progress=progress, run_fn=run_fn, pack=pack)


def run_configs(configs: list[RunConfig], store: ResultsStore, *, retry_failed: bool = False, executor: str = "local",
                ray_address: str | None = None, progress: bool = True,
                run_fn: Callable[..., dict] | None = None, pack: int | None = None) -> GridResult:
    """Run every config the store lacks, in the given order (dependencies first, as :func:`expand` gives
    them); a failing run is recorded and the others go on. Ends with one summary line on stderr.

    ``pack``: train up to this many compatible runs together (``superpos.engine.packed``); 1 trains every run
    alone; None (the default) packs on CUDA only, where it pays. A custom ``run_fn`` runs every config alone.
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
    run_fn = run_fn or run_one
    records: list[dict | None] = [None] * len(configs)
    from .train import tqdm_disabled

    progress = progress and not tqdm_disabled()
    bar = tqdm(total=len(configs), desc="runs", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for unit in units:
        bar.set_postfix_str(configs[unit[0]].label() + (f" +{len(unit) - 1} packed" if len(unit) > 1 else ""),
                            refresh=False)
        try:
            if len(unit) > 1:
                found = run_group([configs[i] for i in unit], store, retry_failed=retry_failed, progress=progress)
            else:
                found = [run_fn(configs[unit[0]], store, retry_failed=retry_failed, progress=progress)]
        except KeyboardInterrupt:
            bar.close()
            raise
        except Exception as error:  # one run's failure must not end the grid
            found = [failed_unless_done(configs[i], error, store) for i in unit]
        for index, record in zip(unit, found):
            records[index] = record
        bar.update(len(unit))
    bar.close()
    result = GridResult(records=records)
    for record in records:
        if record.get("cached") and record["status"] == "done":
            result.cached += 1
        elif record["status"] == "done":
            result.done += 1
        else:
            result.failed += 1
    print(result.summary(), file=sys.stderr)
    return result


def failed_unless_done(config: RunConfig, error: BaseException, store: ResultsStore) -> dict[str, Any]:
    """The stored record of a run that finished before ``error`` (in a packed group), else a failed record, stored."""
    if store.is_done(run_hash := config.run_hash()):
        return {**store.get(run_hash), "cached": False}
    store.put(record := failed_record(config, error))
    return record


def failed_record(config: RunConfig, error: BaseException) -> dict[str, Any]:
    """A record for a run that raised: kept so the grid can report it, retried on the next grid run."""
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return {"hash": config.run_hash(), "config": config.to_dict(), "status": "failed", "retryable": True,
            "reason": f"{type(error).__name__}: {error}{where}", "history": [], "loss_curve": [], "best": None,
            "analysis": {}, "prompt_path": None}
