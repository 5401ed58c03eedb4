"""Tasks: the paper's 13 GLUE/SuperGLUE tasks and the offline ``bbc-*`` stand-in suite, as text-to-text.

>>> task = get_task("rte", data_dir="~/data/super_glue")          # or the hub, when reachable
>>> splits = task.splits("paper")                                  # train / dev / test lists of Example
>>> task.score(["entailment", ...], splits.test).score            # percent, strict (paper) rule

No torch or transformers here: the model is met only through strings.
"""
from __future__ import annotations

from typing import Any

from .base import EVAL_SEED, HELDOUT_DEV, PROTOCOLS, SMALL_TRAIN, Example, Splits, Task, TaskError, take
from .custom import RowsTask, read_rows, task_from_dataset, task_from_files
from .glue import GLUE_HUB, GLUE_SPECS
from .loading import BenchmarkTask
from .metrics import (METRIC_LABELS, Score, average_score, normalize, parse_score, round_score, score_to_text,
                      task_score)
from .offline import BBC_SPECS, BBCTask
from .registry import (PAPER_SPECS, PAPER_TASKS, REGISTERED, TASKS, canonical_name, register_task, task_fingerprint,
                       unregister_task)
from .superglue import SUPERGLUE_HUB, SUPERGLUE_SPECS


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
    spec = dict(PAPER_SPECS[name])
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
