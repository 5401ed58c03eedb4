"""The paper's numbers, as data: every value of SuperPos-Prompt's Tables 1, 2 and 3, transcribed once.

The file ``superpos/data/paper_tables.csv`` is long form, one value per row:
``table, model, method, dropout (1 = with), softmax (1 = softmax weights), n_prompts, task, metric, value,
flag, source``. ``flag = dagger`` marks the paper's † (invalid labels, scored 0); the paper's ``avg`` column
is task ``avg``; Table 2's aggregate is task ``all13``. Rows quoted by the paper from other papers say so in
``source``. Cite values from here as "the paper's Table 1/2/3".

The functions here translate it into the report's vocabulary (our metric names, our backbone names) so a
reproduced number can stand beside the paper's.
"""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

PAPER_CSV = Path(__file__).resolve().parents[1] / "data" / "paper_tables.csv"

#: Our backbone names (hub ids) -> the paper's model column.
PAPER_MODELS = {
    "google/t5-small-lm-adapt": "t5-v1_1-small-lm-adapt",
    "google/t5-base-lm-adapt": "t5-v1_1-base-lm-adapt",
    "google/t5-v1_1-small-lm-adapt": "t5-v1_1-small-lm-adapt",  # unofficial spellings of the same checkpoints
    "google/t5-v1_1-base-lm-adapt": "t5-v1_1-base-lm-adapt",
    "t5-base": "t5-base (original)",
}
MODEL_LABELS = {
    "t5-v1_1-small-lm-adapt": "T5v1.1 Small LM-Adapted",
    "t5-v1_1-base-lm-adapt": "T5v1.1 Base LM-Adapted",
    "t5-base (original)": "T5 Base (original)",
}

#: The paper's metric column -> our metric names (CB's "F1" is macro-F1 over its three classes).
_METRICS = {"acc": "accuracy", "f1": "f1", "mcc": "mcc", "pearson": "pearson", "spearman": "spearman",
            "f1a": "f1a", "em": "em", "score": "score"}


def paper_model(backbone: str) -> str | None:
    """The paper's model name for one of our backbone names, or None when the paper has no such model."""
    return PAPER_MODELS.get(backbone)


@functools.lru_cache(maxsize=1)
def _raw() -> pd.DataFrame:
    frame = pd.read_csv(PAPER_CSV, keep_default_na=False, na_values=[""])
    frame["dropout"] = frame["dropout"].astype(int).astype(bool)
    frame["softmax"] = frame["softmax"].astype(int).astype(bool)
    frame["dagger"] = frame["flag"].fillna("").eq("dagger")
    metric = frame["metric"].map(_METRICS).fillna(frame["metric"])
    frame["metric"] = metric.where(~((frame["task"] == "cb") & (metric == "f1")), "macro_f1")
    return frame


def paper_values(table: str | None = None) -> pd.DataFrame:
    """The transcribed values (a copy), optionally of one table (``"table1"``, ``"table2"``, ``"table3"``)."""
    frame = _raw()
    if table is not None:
        frame = frame[frame["table"] == table]
    return frame.reset_index(drop=True).copy()


def paper_task_scores(table: str = "table1") -> pd.DataFrame:
    """One row per (model, method, dropout, softmax, task): ``score`` = mean of the task's metrics (Table 1
    averages two-metric tasks), ``metrics`` = ``{metric: value}``, ``dagger``, ``source``. No ``avg`` rows."""
    values = paper_values(table)
    values = values[~values["task"].isin(["avg", "all13"])]
    keys = ["table", "model", "method", "dropout", "softmax", "n_prompts", "task"]
    rows = []
    for key, group in values.groupby(keys, sort=False):
        rows.append({**dict(zip(keys, key)), "score": float(group["value"].mean()),
                     "metrics": dict(zip(group["metric"], group["value"])), "dagger": bool(group["dagger"].any()),
                     "source": group["source"].iloc[0]})
    return pd.DataFrame(rows)


def paper_averages(table: str = "table1") -> pd.DataFrame:
    """The paper's own ``Avg.`` column: one row per (model, method, dropout, softmax)."""
    values = paper_values(table)
    return values[values["task"] == "avg"][["model", "method", "dropout", "softmax", "value"]].rename(
        columns={"value": "avg"}).reset_index(drop=True)


def paper_table2() -> pd.DataFrame:
    """Table 2 as printed: standardized overall score mean and std per (model, method, dropout)."""
    values = paper_values("table2")
    wide = values.pivot_table(index=["model", "method", "dropout"], columns="metric", values="value",
                              sort=False).reset_index()
    wide.columns.name = None
    return wide.rename(columns={"standardized_mean": "mean", "standardized_std": "std"})
