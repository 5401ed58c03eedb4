"""Tasks: the paper's 13 GLUE/SuperGLUE tasks and the offline ``bbc-*`` stand-in suite, as text-to-text.

>>> task = get_task("rte", data_dir="~/data/super_glue")          # or the hub, when reachable
>>> splits = task.splits("paper")                                  # train / dev / test lists of Example
>>> task.score(["entailment", ...], splits.test).score            # percent, strict (paper) rule

No torch or transformers here: the model is met only through strings.
"""
from __future__ import annotations

from typing import Any

from ..suggest import did_you_mean

from .base import EVAL_SEED, HELDOUT_DEV, PROTOCOLS, SMALL_TRAIN, Example, Splits, Task, TaskError, take
from .custom import RowsTask, read_rows, task_from_dataset, task_from_files
from .glue import GLUE_HUB, GLUE_SPECS
from .metrics import (METRIC_LABELS, Score, average_score, normalize, parse_score, round_score, score_to_text,
                      task_score)
from .offline import BBC_SPECS, BBCTask
from .superglue import SUPERGLUE_HUB, SUPERGLUE_SPECS

PAPER_TASKS = ("qqp", "qnli", "mnli", "sst2", "stsb", "mrpc", "cola",
               "multirc", "rte", "cb", "copa", "wic", "boolq")  # Table 1's order

_SPECS = {**GLUE_SPECS, **SUPERGLUE_SPECS}
TASKS: dict[str, str] = {name: _SPECS[name]["description"] for name in PAPER_TASKS}
TASKS.update({name: spec["description"] for name, spec in BBC_SPECS.items()})

#: Tasks added with :func:`register_task` (this process only).
REGISTERED: dict[str, Task] = {}

_ALIASES = {name.replace("-", ""): name for name in TASKS}
_ALIASES.update({_SPECS[n]["display_name"].lower().replace("-", ""): n for n in PAPER_TASKS})


def register_task(task: Task, *, replace: bool = False) -> Task:
    """Make ``task`` (e.g. from :func:`task_from_files`) known by its name to :func:`get_task`, ``RunConfig``,
    grids and the CLI of this process. A built-in name, or a registered one without ``replace=True``, is refused."""
    if not isinstance(task, Task):
        raise TaskError(f"register_task: expected a Task (e.g. from task_from_files), got {type(task).__name__}")
    if (task.name in TASKS or task.name.replace("-", "").replace("_", "") in _ALIASES) and task.name not in REGISTERED:
        raise TaskError(f"register_task: {task.name!r} is a built-in task; choose another name")
    if task.name in REGISTERED and not replace:
        raise TaskError(f"register_task: {task.name!r} is already registered; pass replace=True to replace it")
    REGISTERED[task.name] = task
    TASKS[task.name] = task.description
    return task


def unregister_task(name: str) -> None:
    """Forget a task added with :func:`register_task`."""
    if REGISTERED.pop(name, None) is not None:
        TASKS.pop(name, None)


def task_fingerprint(name: str) -> str | None:
    """A registered task's data fingerprint (part of its runs' hashes); ``None`` for built-in tasks, whose data
    a name fixes."""
    task = REGISTERED.get(name)
    return task.fingerprint() if task is not None and hasattr(task, "fingerprint") else None


def canonical_name(name: str) -> str:
    """``"SST-2"``, ``"sst_2"``, ``"sst2"`` -> ``"sst2"``; raises :class:`TaskError` for unknown names."""
    if name in REGISTERED:
        return name
    key = name.strip().lower()
    if key in TASKS:
        return key
    found = _ALIASES.get(key.replace("-", "").replace("_", ""))
    if found is None:
        raise TaskError(f"unknown task {name!r}{did_you_mean(name, TASKS)}; known: {', '.join(TASKS)}")
    return found


def get_task(name: str, *, data_dir: str | None = None, hub_id: str | None = None, **options: Any) -> Task:
    """Build a task. GLUE/SuperGLUE: rows from ``data_dir`` (or ``$SUPERPOS_DATA``) else the hub ``hub_id``
    (default ``nyu-mll/glue`` / ``aps/super_glue``). ``bbc-*``: ``options`` are ``seed``, ``train_size``,
    ``eval_size``, ``val_fraction``, ``max_words`` (see :class:`.offline.BBCTask`)."""
    name = canonical_name(name)
    if name in REGISTERED:
        if data_dir is not None or hub_id is not None or options:
            raise TaskError(f"{name} is a registered task: data_dir, hub_id and options do not apply")
        return REGISTERED[name]
    if name.startswith("bbc-"):
        if data_dir is not None or hub_id is not None:
            raise TaskError(f"{name} is built from the BBC corpus: data_dir / hub_id do not apply")
        return BBCTask(name, **BBC_SPECS[name], **options)
    if options:
        raise TaskError(f"{name}: unknown option(s) {', '.join(sorted(options))}")
    from .loading import BenchmarkTask

    spec = dict(_SPECS[name])
    if hub_id:
        spec["hub_id"] = hub_id
    return BenchmarkTask(name, data_dir=data_dir, **spec)


def describe_tasks() -> list[dict[str, Any]]:
    """One row per task (name, display, benchmark, metrics, targets, description) for listings."""
    return [get_task(name).info() for name in TASKS]


__all__ = [
    "TASKS", "PAPER_TASKS", "PROTOCOLS", "EVAL_SEED", "SMALL_TRAIN", "HELDOUT_DEV", "Example", "Splits", "Task", "TaskError",
    "Score", "METRIC_LABELS", "get_task", "describe_tasks", "canonical_name", "average_score", "task_score",
    "normalize", "parse_score", "round_score", "score_to_text", "take", "GLUE_HUB", "SUPERGLUE_HUB",
    "RowsTask", "read_rows", "task_from_files", "task_from_dataset", "register_task", "unregister_task",
    "task_fingerprint", "REGISTERED",
]
