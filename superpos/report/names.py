"""Display names and orders: tasks (the registry's names, Table 1's order), methods (the names they were
registered with: the paper's), the dropout mark, a setting's label (:class:`~superpos.report.settings.Variant`)."""
from __future__ import annotations

import functools
from typing import Iterable

from ..methods import METHODS
from ..tasks.metrics import METRIC_LABELS
from .settings import Variant, method_rank

METRIC_ORDER = tuple(METRIC_LABELS)
CHECK, CROSS = "✓", "✗"


@functools.lru_cache(maxsize=None)
def _task(name: str):
    try:
        from ..tasks import get_task

        return get_task(name)
    except Exception:  # an unknown or unloadable task still gets a table, under its own name
        return None


def task_label(name: str) -> str:
    """The task's display name (``SST-2``, ``bbc-topic``)."""
    task = _task(name)
    return getattr(task, "display_name", None) or name


def task_metrics(name: str, available: Iterable[str] = ()) -> tuple[str, ...]:
    """The task's metric names in Table 1's order (from the task registry, else from ``available``)."""
    task = _task(name)
    if task is not None:
        return tuple(task.metric_names)
    return tuple(m for m in METRIC_ORDER if m in set(available))


def metric_header(name: str, available: Iterable[str] = ()) -> str:
    """``F1/Acc.``-style header of a task's metrics."""
    return "/".join(METRIC_LABELS.get(m, m) for m in task_metrics(name, available))


def task_order(tasks: Iterable[str]) -> list[str]:
    """The paper's task order (Table 1) for its tasks, then the registry's order, then by name."""
    try:
        from ..tasks import TASKS

        known = list(TASKS)
    except Exception:
        known = []
    tasks = list(dict.fromkeys(tasks))
    return sorted(tasks, key=lambda t: (known.index(t) if t in known else len(known), t))


def variant_label(method: str, method_config: dict | None) -> str:
    """A short name for a method and how its config departs from the method's defaults (:class:`Variant`):
    ``superpos``, ``superpos (softmax)``, ``superpos m=16``, ``simple n=20``, ``simple init=labels``;
    EPT's ablation stages read ``ept (decomposition)``, ``ept (+ fusion)``, ``ept (+ projection only)``."""
    return Variant.of(method, method_config).label


def method_label(method: str, variant: str | None = None) -> str:
    """The method's registered name (the paper's: ``SuperPos PT``), with the variant's suffix."""
    variant = variant or method
    base = METHODS[method].label if method in METHODS else method
    return base + variant[len(method):] if variant.startswith(method) else variant


def dropout_mark(value) -> str:
    return CHECK if bool(value) else CROSS


def methods_named(frame) -> str:
    """The registered names of the methods that ``frame``'s runs use, in their order (Table 1's for the paper's),
    for a title or caption: ``"Simple PT and SuperPos PT"``."""
    present = set(frame["method"]) if len(frame) else set()
    names = [method_label(method) for method in sorted(present, key=lambda m: (method_rank(m), str(m)))]
    return ", ".join(names[:-1]) + (" and " if len(names) > 1 else "") + names[-1] if names else "no method"
