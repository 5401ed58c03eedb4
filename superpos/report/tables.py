"""Table layouts from :func:`~superpos.report.scores.task_scores` rows: Table 1 (methods x tasks), ablation
tables (one column per value of a factor), cost tables.

Everything starts from :func:`superpos.engine.load_records` (one row per run) and goes through
:func:`task_scores`, which averages seeds: one row per (backbone, method variant, dropout, task) with the
task score (the mean of the task's metrics, as Table 1 reports two-metric tasks), its spread over seeds,
the per-metric means and the dagger flag.

Conventions (paper §5):

- **strict** (default): a run that generated one invalid label scores 0 on that task (``†``).
- **lenient**: invalid labels count as wrong answers instead (``lenient=True``).
- ``†`` on an averaged cell: at least one seed produced an invalid label (``†k/n`` says how many).
- ``Avg.``: the mean of a row's task scores over the tasks more than one row ran, printed only when the row has
  every one of them (the paper prints "-" for ATTEMPT, which skips its four source tasks); a task only one row
  ran (a source run of ATTEMPT's alone) keeps its column but stays out of every average.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from .names import dropout_mark, method_label, metric_header, task_label, task_order
from .scores import select, with_variants
from .settings import field_word, sort_variants, value_key


def format_cell(row: pd.Series | dict, *, single: bool = False, digits: int = 1) -> str:
    """Table 1's cell: ``81.9/86.3`` (metric means), ``†`` for invalid labels, ``±`` for the seeds' spread.

    ``single=True`` prints the one task score instead of each metric (lenient tables: per-metric lenient
    values are not in the records' frame; ablation tables: one number per cell).
    """
    if not row["seeds"]:
        return "failed" if row["failed"] else "-"
    if single or not row["metrics"]:
        text = f"{row['score']:.{digits}f}"
    else:
        text = "/".join(f"{v:.{digits}f}" for v in row["metrics"].values())
    if row["seeds"] > 1:
        text += f" ±{row['score_std']:.{digits}f}"
    if row["dagger"]:
        text += " †" if row["daggers"] == row["seeds"] == 1 else f" †{row['daggers']}/{row['seeds']}"
    return text


def _task_header(task: str, scores: pd.DataFrame, lenient: bool) -> str:
    available = set()
    for metrics in scores.loc[scores["task"] == task, "metrics"]:
        available.update(metrics)
    header = "score (lenient)" if lenient else metric_header(task, available)
    return f"{task_label(task)} {header}".strip()


def method_table(scores: pd.DataFrame, *, lenient: bool = False, rows: Sequence[str] = ("backbone", "variant", "dropout"),
                 digits: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1's layout from :func:`task_scores` output: one row per setting, one column per task, ``Avg.`` (over
    the tasks more than one row has; see the module docstring).

    Returns ``(formatted, numeric)``: strings as the paper prints them, and the task scores as numbers
    (the same rows and columns; ``Avg.`` NaN where a task is missing).
    """
    if scores.empty:
        empty = pd.DataFrame()
        return empty, empty
    tasks = task_order(scores["task"])
    groups = list(scores.groupby(list(rows), sort=False, dropna=False))
    # Avg. over the tasks more than one row ran: a task only one setting has (ATTEMPT's source runs of simple prompt
    # tuning) would enter that row's average alone and leave every other row without one. A row lacking one of
    # them prints "-", as the paper does for ATTEMPT, which skips its source tasks.
    # (the majority-class baseline row covers every task and does not count: it would pull a source task in)
    ran = [group for _, group in groups if not (group["method"] == "majority class").all()]
    shared = [t for t in tasks if len(ran) <= 1 or sum((group["task"] == t).any() for group in ran) > 1]
    formatted, numeric = [], []
    for key, group in groups:
        key = dict(zip(rows, key))
        label = _row_label(key, group)
        by_task = {row["task"]: row for _, row in group.iterrows()}
        cells = {_task_header(t, scores, lenient): format_cell(by_task[t], single=lenient, digits=digits)
                 if t in by_task else "-" for t in tasks}
        values = {_task_header(t, scores, lenient): by_task[t]["score"] if t in by_task else math.nan for t in tasks}
        complete = bool(shared) and all(t in by_task and not math.isnan(by_task[t]["score"]) for t in shared)
        average = sum(by_task[t]["score"] for t in shared) / len(shared) if complete else math.nan
        formatted.append({**label, **cells, "Avg.": f"{average:.{digits}f}" if complete else "-"})
        numeric.append({**label, **values, "Avg.": average})
    return pd.DataFrame(formatted), pd.DataFrame(numeric)


def _row_label(key: dict, group: pd.DataFrame) -> dict:
    label = {}
    if "backbone" in key:
        label["Backbone"] = key["backbone"]
    if "variant" in key:
        label["Method"] = method_label(group["method"].iloc[0], key["variant"]) if "method" in group else key["variant"]
    elif "method" in key:
        label["Method"] = method_label(key["method"])
    if "dropout" in key:
        label["Dropout"] = dropout_mark(key["dropout"])
    for name, value in key.items():
        if name not in ("backbone", "variant", "method", "dropout"):
            label[name] = value
    return label


def factor_table(scores: pd.DataFrame, factor: str, *, rows: Sequence[str] = ("backbone", "task"),
                 digits: int = 1, difference: tuple | None = None,
                 where: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (backbone, task), one column per value of ``factor`` (``m``, ``n_prompts``, ``init``,
    ``variant``, ``dropout``): the best validation score (seeds averaged), as ``(formatted, numeric)``.

    ``difference=(a, b)`` adds a column ``Δ (a − b)``. A final ``Avg.`` row averages tasks per column
    when every task has every value. ``where``: :func:`select` conditions applied first (e.g.
    ``{"init": "vocab"}`` for the prompt-length columns).
    """
    if where:
        scores = select(scores, **where)
    if scores.empty:
        empty = pd.DataFrame()
        return empty, empty
    values = list(dict.fromkeys(scores[factor]))
    values = sort_variants(scores, values) if factor == "variant" else \
        sorted(values, key=lambda v: (isinstance(v, str), value_key(factor, v)))
    names = {v: _factor_name(factor, v) for v in values}
    formatted, numeric = [], []
    for key, group in scores.groupby(list(rows), sort=False, dropna=False):
        key = dict(zip(rows, key))
        label = _row_label({k: v for k, v in key.items() if k != "task"}, group)
        if "task" in key:
            label["Task"] = task_label(key["task"])
        by_value = {row[factor]: row for _, row in group.iterrows()}
        cells = {names[v]: format_cell(by_value[v], single=True, digits=digits) if v in by_value else "-"
                 for v in values}
        number = {names[v]: by_value[v]["score"] if v in by_value else math.nan for v in values}
        if difference is not None:
            a, b = difference
            delta = number.get(names.get(a), math.nan) - number.get(names.get(b), math.nan)
            number[f"Δ ({names.get(a, a)} − {names.get(b, b)})"] = delta
            cells[f"Δ ({names.get(a, a)} − {names.get(b, b)})"] = "-" if math.isnan(delta) else f"{delta:+.{digits}f}"
        formatted.append({**label, **cells})
        numeric.append({**label, **number})
    numeric_frame = pd.DataFrame(numeric)
    formatted_frame = pd.DataFrame(formatted)
    if "Task" not in numeric_frame.columns:
        return formatted_frame, numeric_frame
    # One "Avg." row per group of the other row keys (backbone, method, ...), over its tasks, when complete.
    labels = [c for c in ("Backbone", "Method", "Dropout") if c in numeric_frame.columns]
    value_columns = [c for c in numeric_frame.columns if c not in {"Backbone", "Task", "Method", "Dropout"}]
    pieces_n, pieces_f = [], []
    groups = numeric_frame.groupby(labels, sort=False, dropna=False) if labels else [((), numeric_frame)]
    for _, group in groups:
        pieces_n.append(group)
        pieces_f.append(formatted_frame.loc[group.index])
        if len(group) > 1 and not group[value_columns].isna().any().any():
            average = group[value_columns].mean()
            label = {c: group[c].iloc[0] for c in labels}
            label["Task"] = "Avg."
            pieces_n.append(pd.DataFrame([{**label, **average.to_dict()}]))
            pieces_f.append(pd.DataFrame([{**{c: formatted_frame.loc[group.index[0], c] for c in labels}, "Task": "Avg.",
                                           **{c: (f"{v:+.{digits}f}" if c.startswith("Δ") else f"{v:.{digits}f}")
                                              for c, v in average.items()}}]))
    numeric_frame = pd.concat(pieces_n, ignore_index=True)
    formatted_frame = pd.concat(pieces_f, ignore_index=True)
    return formatted_frame, numeric_frame


def _factor_name(factor: str, value) -> str:
    if factor == "variant":
        method = str(value).split(" ")[0]
        return method_label(method, str(value))
    if factor == "dropout":
        return f"dropout {dropout_mark(value)}"
    return f"{field_word(factor)}={value}"


def cost_table(frame: pd.DataFrame, *, by: Sequence[str] = ("backbone", "method", "variant")) -> pd.DataFrame:
    """Trainable parameters per setting (the paper's efficiency argument); no timings (they vary run to run)."""
    frame = with_variants(frame) if "variant" not in frame.columns else frame
    done = frame[frame["status"] == "done"] if not frame.empty else frame
    if done.empty:
        return pd.DataFrame(columns=["Backbone", "Method", "Trainable parameters"])
    rows = []
    for key, group in done.groupby(list(by), sort=False):
        key = dict(zip(by, key))
        rows.append({"Backbone": key.get("backbone"), "Method": method_label(group["method"].iloc[0], key.get("variant")),
                     "Trainable parameters": f"{int(group['trainable_params'].max()):,}"})
    return pd.DataFrame(rows)
