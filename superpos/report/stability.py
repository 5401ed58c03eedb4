"""Stability across tasks (Table 2) and what the learned superposition weights share (Figure 2d).

Standardized overall scoring (paper §5, after Yu et al. 2023). For task ``t`` and compared setting ``j``
(a backbone x method x dropout row of Table 1) with task score ``x_tj`` (two-metric tasks averaged):

    s_tj = 100 · (x_tj − min_j' x_tj') / (max_j' x_tj' − min_j' x_tj')

then, per setting, the mean and the (population, ddof = 0) standard deviation of ``s_tj`` over the tasks.
The min and max run over *every* compared setting of the table, of both model sizes together.

This is the variant that reproduces the paper's Table 2 from its Table 1 (all 28 printed values within
±0.07: Table 2 is printed to 0.1 from Table 1 values printed to 0.1; ``tests/test_report.py``): ATTEMPT left out (it skips four tasks) and the min/max
pooled over the 14 rows of Small and Base. Normalizing each model size separately, keeping ATTEMPT in the
min/max, normalizing each metric before averaging, or the sample std (ddof = 1) all miss by 1–21 points.

A task on which every compared setting scores the same carries no ranking: it is left out (NaN).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from .paper import MODEL_LABELS, paper_table2, paper_task_scores
from .names import dropout_mark, method_label, task_label, task_order

SETTING = ("backbone", "method", "variant", "dropout")


def standardized_scores(scores: pd.DataFrame, *, setting: Sequence[str] = SETTING, task: str = "task",
                        value: str = "score", complete_only: bool = True) -> pd.DataFrame:
    """``s = 100 (x − min) / (max − min)`` per task over the compared settings; long form with column ``s``.

    ``complete_only``: drop settings that lack a task the others have (as the paper drops ATTEMPT) before
    taking the min and max.
    """
    scores = scores[list(setting) + [task, value]].dropna(subset=[value]).copy()
    if scores.empty:
        return scores.assign(s=pd.Series(dtype=float))
    if complete_only:
        tasks = set(scores[task])
        has = scores.groupby(list(setting), sort=False, dropna=False)[task].agg(lambda t: set(t) >= tasks)
        keep = has[has].index
        scores = scores.set_index(list(setting)).loc[keep].reset_index() if len(keep) else scores.iloc[0:0]
    low = scores.groupby(task)[value].transform("min")
    high = scores.groupby(task)[value].transform("max")
    spread = (high - low).where(high > low)
    scores["s"] = 100.0 * (scores[value] - low) / spread
    return scores.reset_index(drop=True)


def standardized_overall(scores: pd.DataFrame, *, setting: Sequence[str] = SETTING, task: str = "task",
                         value: str = "score", complete_only: bool = True) -> pd.DataFrame:
    """Table 2: per setting, ``mean`` and ``std`` (ddof = 0) of the standardized scores over tasks, and
    ``tasks`` (how many tasks entered)."""
    standard = standardized_scores(scores, setting=setting, task=task, value=value, complete_only=complete_only)
    rows = []
    for key, group in standard.groupby(list(setting), sort=False, dropna=False):
        values = group["s"].dropna().to_numpy(dtype=float)
        rows.append({**dict(zip(setting, key)),
                     "mean": float(values.mean()) if len(values) else math.nan,
                     "std": float(values.std(ddof=0)) if len(values) else math.nan,
                     "tasks": int(len(values))})
    return pd.DataFrame(rows, columns=list(setting) + ["mean", "std", "tasks"])


def stability_table(scores: pd.DataFrame, *, digits: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 2's layout from :func:`superpos.report.task_scores` output: ``(formatted, numeric)``, one row
    per (method, dropout), one column per backbone, cells ``mean±std``."""
    overall = standardized_overall(scores)
    if overall.empty:
        return pd.DataFrame(), overall
    backbones = list(dict.fromkeys(overall["backbone"]))
    rows = []
    for (method, variant, dropout), group in overall.groupby(["method", "variant", "dropout"], sort=False):
        row = {"Method": method_label(method, variant), "Dropout": dropout_mark(dropout)}
        for backbone in backbones:
            hit = group[group["backbone"] == backbone]
            row[backbone] = (f"{hit['mean'].iloc[0]:.{digits}f}±{hit['std'].iloc[0]:.{digits}f}"
                             if len(hit) and not math.isnan(hit["mean"].iloc[0]) else "-")
        rows.append(row)
    return pd.DataFrame(rows), overall


def paper_table2_check(digits: int = 1) -> pd.DataFrame:
    """Table 2 recomputed from the paper's Table 1 with :func:`standardized_overall`, beside the printed
    Table 2 (the formula's check): one row per (model, method, dropout)."""
    table1 = paper_task_scores("table1")
    table1 = table1[table1["method"] != "attempt"].rename(columns={"model": "backbone"})
    table1["variant"] = table1["method"]
    ours = standardized_overall(table1)
    printed = paper_table2().rename(columns={"model": "backbone", "mean": "printed_mean", "std": "printed_std"})
    merged = ours.merge(printed, on=["backbone", "method", "dropout"], how="inner")
    rows = []
    for _, row in merged.iterrows():
        rows.append({"Model": MODEL_LABELS.get(row["backbone"], row["backbone"]),
                     "Method": method_label(row["method"]), "Dropout": dropout_mark(row["dropout"]),
                     "Recomputed": f"{row['mean']:.{digits}f}±{row['std']:.{digits}f}",
                     "Printed (Table 2)": f"{row['printed_mean']:.{digits}f}±{row['printed_std']:.{digits}f}",
                     "Δ mean": f"{row['mean'] - row['printed_mean']:+.2f}",
                     "Δ std": f"{row['std'] - row['printed_std']:+.2f}"})
    return pd.DataFrame(rows)


def beside_paper_table2(overall: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """Our Table 2 beside the printed one where our backbone is one of the paper's models."""
    from .paper import paper_model

    printed = paper_table2()
    columns = ["Backbone", "Method", "Dropout", "Ours", "Paper", "Δ mean", "Δ std"]
    rows = []
    for _, row in overall.iterrows():
        model = paper_model(row["backbone"])
        if model is None or row["variant"] != row["method"]:
            continue
        hit = printed[(printed["model"] == model) & (printed["method"] == row["method"])
                      & (printed["dropout"] == bool(row["dropout"]))]
        if hit.empty:
            continue
        p = hit.iloc[0]
        rows.append({"Backbone": row["backbone"], "Method": method_label(row["method"]),
                     "Dropout": dropout_mark(row["dropout"]),
                     "Ours": f"{row['mean']:.{digits}f}±{row['std']:.{digits}f}",
                     "Paper": f"{p['mean']:.{digits}f}±{p['std']:.{digits}f}",
                     "Δ mean": f"{row['mean'] - p['mean']:+.{digits}f}", "Δ std": f"{row['std'] - p['std']:+.{digits}f}"})
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- Figure 2(d)
def weight_similarity(frame: pd.DataFrame) -> pd.DataFrame:
    """Cosine similarity of the learned superposition weights ``p'_i`` across tasks (Figure 2d).

    For every finished ``superpos`` run, ``record["analysis"]["weights"]`` is ``p'`` (n x m) and
    ``["token_ids"]`` the m sampled tokens (E_freeze's rows). Runs are compared only when they share the
    sampled tokens (same backbone, seed and m: the same E_freeze), since ``p'_i`` weights those tokens.
    Per group and prompt token ``i``: the tasks x tasks matrix ``cos(p'_i(task a), p'_i(task b))``;
    matrices of several seeds are averaged.

    Returns long form: ``backbone, variant, dropout, prompt`` (1-based ``i``), ``task_a``, ``task_b``,
    ``cosine``, ``seeds``.
    """
    columns = ["backbone", "variant", "dropout", "prompt", "task_a", "task_b", "cosine", "seeds"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    from .scores import with_variants

    runs = with_variants(frame)
    runs = runs[(runs["method"] == "superpos") & (runs["status"] == "done")]
    collected: dict[tuple, list[np.ndarray]] = {}
    for group_key, group in runs.groupby(["backbone", "variant", "dropout", "seed"], sort=False):
        weights, token_sets = {}, set()
        for _, run in group.iterrows():
            analysis = run["analysis"] or {}
            if "weights" not in analysis:
                continue
            weights[run["task"]] = np.asarray(analysis["weights"], dtype=float)
            token_sets.add(tuple(analysis.get("token_ids") or ()))
        if len(weights) < 2:
            continue
        if len(token_sets) != 1:
            raise ValueError(f"weight_similarity: runs of {group_key} sampled different tokens; p' is only "
                             "comparable across tasks over the same E_freeze (same backbone, seed and m)")
        tasks = task_order(weights)
        stack = np.stack([weights[t] for t in tasks])  # [tasks, n, m]
        unit = stack / np.clip(np.linalg.norm(stack, axis=2, keepdims=True), 1e-12, None)
        similarity = np.einsum("anm,bnm->nab", unit, unit)  # [n, tasks, tasks]
        collected.setdefault((*group_key[:3], tuple(tasks)), []).append(similarity)
    rows = []
    for (backbone, variant, dropout, tasks), matrices in collected.items():
        mean = np.mean(matrices, axis=0)
        for i in range(mean.shape[0]):
            for a, task_a in enumerate(tasks):
                for b, task_b in enumerate(tasks):
                    rows.append({"backbone": backbone, "variant": variant, "dropout": bool(dropout), "prompt": i + 1,
                                 "task_a": task_a, "task_b": task_b, "cosine": float(mean[i, a, b]),
                                 "seeds": len(matrices)})
    return pd.DataFrame(rows, columns=columns)


def distinctiveness(similarity: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Per task: the mean cosine similarity of its ``p'_i`` to the other tasks', averaged over the prompt
    tokens (lower = a more distinctive prompt; the paper finds CB, COPA and RTE most distinctive)."""
    if similarity.empty:
        return pd.DataFrame(columns=["Backbone", "Task", "Mean cosine to other tasks"])
    off = similarity[similarity["task_a"] != similarity["task_b"]]
    rows = []
    for (backbone, task), group in off.groupby(["backbone", "task_a"], sort=False):
        rows.append({"Backbone": backbone, "Task": task_label(task),
                     "Mean cosine to other tasks": round(float(group["cosine"].mean()), digits)})
    return pd.DataFrame(rows).sort_values(["Backbone", "Mean cosine to other tasks"], kind="stable").reset_index(drop=True)
