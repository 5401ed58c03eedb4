"""The paper beside ours: our task scores next to the paper's for the same setting, and the paper's tables as
printed (from :mod:`superpos.report.paper`, the paper's numbers as data)."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from .names import dropout_mark, method_label, metric_header, task_label, task_order
from .paper import MODEL_LABELS, paper_averages, paper_model, paper_task_scores


def beside_paper(scores: pd.DataFrame, *, table: str = "table1", digits: int = 1) -> pd.DataFrame:
    """Our task scores beside the paper's for the same setting, with the difference (ours − paper).

    A setting matches when our backbone is one of the paper's models (``paper.PAPER_MODELS``), the method
    and dropout agree and the method config is the paper's (its defaults, or ``softmax`` alone for Table 3).
    Rows: one per (backbone, method, dropout, task), plus an ``Avg.`` row per setting where both sides
    have every task of the paper's row. Empty when nothing matches.
    """
    columns = ["Backbone", "Method", "Dropout", "Task", "Ours", "Paper", "Δ (ours − paper)", "Source"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    paper = paper_task_scores(table)
    if paper.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for key, group in scores.groupby(["backbone", "method", "variant", "dropout"], sort=False):
        backbone, method, variant, dropout = key
        model = paper_model(backbone)
        softmax = variant == f"{method} (softmax)"
        if model is None or not (variant == method or softmax):
            continue
        theirs = paper[(paper["model"] == model) & (paper["method"] == method) & (paper["dropout"] == bool(dropout))
                       & (paper["softmax"] == softmax) & (paper["n_prompts"] == 10)]
        if theirs.empty:
            continue
        theirs = theirs.set_index("task")
        ours_all, paper_all = [], []
        for _, row in group.iterrows():
            if row["task"] not in theirs.index:
                continue
            p = theirs.loc[row["task"]]
            ours = row["score"]
            rows.append({"Backbone": backbone, "Method": method_label(method, variant), "Dropout": dropout_mark(dropout),
                         "Task": task_label(row["task"]),
                         "Ours": _mark(ours, row["dagger"], digits), "Paper": _mark(p["score"], p["dagger"], digits),
                         "Δ (ours − paper)": "-" if math.isnan(ours) else f"{ours - p['score']:+.{digits}f}",
                         "Source": f"paper {table.replace('table', 'Table ')}, {MODEL_LABELS.get(model, model)}"
                                   + ("" if p["source"] == "this paper" else f" ({p['source']})")})
            ours_all.append(ours)
            paper_all.append(p["score"])
        if len(ours_all) == len(theirs) and ours_all and not any(math.isnan(v) for v in ours_all):
            ours_avg, paper_avg = sum(ours_all) / len(ours_all), sum(paper_all) / len(paper_all)
            rows.append({"Backbone": backbone, "Method": method_label(method, variant), "Dropout": dropout_mark(dropout),
                         "Task": "Avg.", "Ours": f"{ours_avg:.{digits}f}", "Paper": f"{paper_avg:.{digits}f}",
                         "Δ (ours − paper)": f"{ours_avg - paper_avg:+.{digits}f}",
                         "Source": f"paper {table.replace('table', 'Table ')}, {MODEL_LABELS.get(model, model)}"})
    return pd.DataFrame(rows, columns=columns)


def _mark(value: float, dagger: bool, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" + (" †" if dagger else "")


def paper_table(table: str = "table1", *, models: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                dropout: Sequence[bool] | None = None, digits: int = 1) -> pd.DataFrame:
    """The paper's own table (Table 1 or 3) in Table 1's layout, for reference beside a notebook's results:
    one row per (model, method, dropout, softmax), one column per task (``81.9/86.3``, ``†``), its ``Avg.``."""
    scores = paper_task_scores(table)
    if models is not None:
        scores = scores[scores["model"].isin(list(models))]
    if methods is not None:
        scores = scores[scores["method"].isin(list(methods))]
    if dropout is not None:
        scores = scores[scores["dropout"].isin([bool(d) for d in dropout])]
    if scores.empty:
        return pd.DataFrame()
    averages = paper_averages(table).set_index(["model", "method", "dropout", "softmax"])["avg"].to_dict()
    tasks = task_order(scores["task"])
    rows = []
    for key, group in scores.groupby(["model", "method", "dropout", "softmax", "source"], sort=False):
        model, method, drop, softmax, source = key
        by_task = {row["task"]: row for _, row in group.iterrows()}
        cells = {}
        for task in tasks:
            if task not in by_task:
                cells[f"{task_label(task)} {metric_header(task)}"] = "-"
                continue
            row = by_task[task]
            text = "/".join(f"{v:.{digits}f}" for v in row["metrics"].values())
            cells[f"{task_label(task)} {metric_header(task)}"] = text + (" †" if row["dagger"] else "")
        average = averages.get((model, method, drop, softmax))
        rows.append({"Model": MODEL_LABELS.get(model, model),
                     "Method": method_label(method) + (" (softmax)" if softmax else ""),
                     "Dropout": dropout_mark(drop), **cells,
                     "Avg.": "-" if average is None or (isinstance(average, float) and math.isnan(average))
                     else f"{average:.{digits}f}",
                     "Source": source})
    return pd.DataFrame(rows)
