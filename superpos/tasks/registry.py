"""The task names: the paper's 13 tasks, the ``bbc-*`` suite and the tasks registered in this process, with their
spellings (``"SST-2"``, ``"sst_2"``, ``"sst2"``) and the registration itself."""
from __future__ import annotations

from ..suggest import did_you_mean
from .base import Task, TaskError
from .glue import GLUE_SPECS
from .offline import BBC_SPECS
from .superglue import SUPERGLUE_SPECS

PAPER_TASKS = ("qqp", "qnli", "mnli", "sst2", "stsb", "mrpc", "cola",
               "multirc", "rte", "cb", "copa", "wic", "boolq")  # Table 1's order

#: The GLUE and SuperGLUE tasks' specs, by name.
PAPER_SPECS: dict[str, dict] = {**GLUE_SPECS, **SUPERGLUE_SPECS}
TASKS: dict[str, str] = {name: PAPER_SPECS[name]["description"] for name in PAPER_TASKS}
TASKS.update({name: spec["description"] for name, spec in BBC_SPECS.items()})

#: Tasks added with :func:`register_task` (this process only).
REGISTERED: dict[str, Task] = {}

_ALIASES = {name.replace("-", ""): name for name in TASKS}
_ALIASES.update({PAPER_SPECS[n]["display_name"].lower().replace("-", ""): n for n in PAPER_TASKS})


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
