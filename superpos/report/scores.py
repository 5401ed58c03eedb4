"""Scores per setting: records' rows -> one row per (backbone, setting, dropout, task), seeds averaged.

Everything starts from :func:`superpos.engine.load_records` (one row per run) and goes through
:func:`task_scores`, which averages seeds: the task score (the mean of the task's metrics, as Table 1 reports
two-metric tasks), its spread over seeds, the per-metric means and the dagger flag, strict and lenient each at
its own best point. :func:`learning_curves` and :func:`loss_curves` give every evaluation and loss point.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from ..engine.frame import method_columns
from ..tasks.metrics import METRIC_LABELS
from .names import task_metrics, task_order
from .settings import Variant, method_rank, sort_variants, variant_named

ENTRY = ("backbone", "method", "variant", "dropout")


def select(frame: pd.DataFrame, **conditions) -> pd.DataFrame:
    """Rows of ``frame`` (runs or task scores) whose columns equal the given values; a list or tuple value
    means "any of these". ``select(runs, method="superpos", dropout=False)``."""
    if frame.empty:
        return frame
    mask = pd.Series(True, index=frame.index)
    for column, value in conditions.items():
        if column not in frame.columns:
            raise ValueError(f"select: no column {column!r}; columns: {', '.join(map(str, frame.columns))}")
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        mask &= frame[column].isin(values)
    return frame[mask].reset_index(drop=True)


def with_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` plus a ``setting`` column (its :class:`Variant`) and a ``variant`` column (the setting's label)."""
    frame = frame.copy()
    if frame.empty:
        frame["setting"] = pd.Series(dtype=object)
        frame["variant"] = pd.Series(dtype=object)
        return frame
    frame["setting"] = [Variant.of(m, c) for m, c in zip(frame["method"], frame["method_config"])]
    frame["variant"] = [setting.label for setting in frame["setting"]]
    return frame


def metric_columns(frame: pd.DataFrame, split: str = "test") -> list[str]:
    prefix = f"{split}_"
    skip = {"score", "lenient_score", "invalid_rate", "dagger"}
    return [c for c in frame.columns if c.startswith(prefix) and c[len(prefix):] not in skip
            and c[len(prefix):] in METRIC_LABELS]


def task_scores(frame: pd.DataFrame, *, lenient: bool = False, by: Sequence[str] = ENTRY,
                split: str = "test") -> pd.DataFrame:
    """One row per (``by`` ..., task), seeds averaged.

    Columns: ``score`` (mean over finished seeds of the task score: strict, or lenient with
    ``lenient=True``), ``score_std`` (sample std over seeds; 0 for one seed), ``seeds`` (finished runs),
    ``failed`` (runs whose record says failed), ``daggers`` (seeds with an invalid label), ``dagger``
    (any), ``invalid_rate`` (mean fraction of invalid predictions), ``best_step`` (mean step of the strict-best
    point), ``best_lenient_step`` (mean step of the lenient-best point, where the lenient score is read), ``metrics``
    (``{metric: mean}``, strict values), and the config columns of ``by``. Whatever ``lenient`` says,
    ``strict_score``/``strict_std``, ``lenient_score``/``lenient_std`` and ``invalid_std`` are there too,
    for figures that show both conventions and the invalid rate side by side.
    """
    frame = with_variants(frame) if "variant" not in frame.columns else frame
    keys = list(by) + ["task"]
    config_columns = method_columns()  # method-config fields carried into the rows (a variant fixes them)
    columns = keys + [c for c in config_columns if c not in keys] + [
        "setting", "score", "score_std", "seeds", "failed", "daggers", "dagger", "invalid_rate", "best_step", "best_lenient_step",
        "metrics", "strict_score", "strict_std", "lenient_score", "lenient_std", "invalid_std", "lenient_invalid_rate",
        "lenient_invalid_std"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    value = f"{split}_lenient_score" if lenient else f"{split}_score"
    metrics = metric_columns(frame, split)
    def spread(done: pd.DataFrame, column: str) -> tuple[float, float]:
        values = pd.to_numeric(done[column], errors="coerce").dropna()
        return (float(values.mean()) if len(values) else math.nan,
                float(values.std(ddof=1)) if len(values) > 1 else 0.0)

    rows = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        done = group[group["status"] == "done"]
        scores = pd.to_numeric(done[value], errors="coerce").dropna()
        strict, lenient_values, invalid, lenient_invalid = (
            spread(done, f"{split}_{c}") if f"{split}_{c}" in done.columns else (math.nan, 0.0)
            for c in ("score", "lenient_score", "invalid_rate", "lenient_invalid_rate"))
        daggers = int(done[f"{split}_dagger"].fillna(False).astype(bool).sum()) if len(done) else 0
        means = {}
        for column in metrics:
            values = pd.to_numeric(done[column], errors="coerce").dropna()
            if len(values):
                means[column[len(split) + 1:]] = float(values.mean())
        first = group.iloc[0]
        rows.append({
            **{column: first[column] for column in config_columns if column in group.columns and column not in keys},
            **dict(zip(keys, key)),
            "setting": first["setting"] if "setting" in group.columns else None,
            "score": float(scores.mean()) if len(scores) else math.nan,
            "score_std": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "seeds": int(len(scores)),
            "failed": int((group["status"] != "done").sum()),
            "daggers": daggers,
            "dagger": daggers > 0,
            "invalid_rate": float(pd.to_numeric(done[f"{split}_invalid_rate"], errors="coerce").mean())
            if len(done) else math.nan,
            "best_step": float(pd.to_numeric(done["best_step"], errors="coerce").mean()) if len(done) else math.nan,
            "best_lenient_step": float(pd.to_numeric(done.get("best_lenient_step", done["best_step"]),
                                                     errors="coerce").mean()) if len(done) else math.nan,
            "metrics": {m: means[m] for m in task_metrics(key[-1], means) if m in means} or means,
            "strict_score": strict[0], "strict_std": strict[1],
            "lenient_score": lenient_values[0], "lenient_std": lenient_values[1], "invalid_std": invalid[1],
            "lenient_invalid_rate": lenient_invalid[0], "lenient_invalid_std": lenient_invalid[1],
        })
    return _sorted(pd.DataFrame(rows, columns=columns))


def _sorted(scores: pd.DataFrame) -> pd.DataFrame:
    if scores.empty:
        return scores.reset_index(drop=True)
    order = {t: i for i, t in enumerate(task_order(scores["task"]))}
    keyed = scores.assign(
        _task=scores["task"].map(order),
        _method=scores["method"].map(method_rank) if "method" in scores else 0,
    )
    if "variant" in keyed.columns:
        ranks = {v: i for i, v in enumerate(sort_variants(keyed, keyed["variant"]))}
        keyed["_variant"] = keyed["variant"].map(ranks)
    sort = [c for c in ("backbone", "_method", "_variant", "dropout") if c in keyed.columns] + ["_task"]
    keyed = keyed.sort_values(sort, kind="stable")
    return keyed.drop(columns=[c for c in ("_task", "_method", "_variant") if c in keyed.columns]).reset_index(drop=True)


def _with_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``setting`` and ``variant`` columns: from the method configs, else from the labels."""
    if "setting" in frame.columns:
        return frame
    if "method_config" in frame.columns or "variant" not in frame.columns:
        return with_variants(frame)
    return frame.assign(setting=[variant_named(m, v) for m, v in zip(frame["method"], frame["variant"])])


def learning_curves(frame: pd.DataFrame, *, lenient: bool = False) -> pd.DataFrame:
    """Every evaluation point of every finished run, long form: config columns, ``step``, ``epoch``,
    ``score`` (validation score in percent, strict or lenient), ``strict_score`` and ``lenient_score``
    (both conventions, whatever ``lenient`` says), ``invalid_rate`` (fraction, 0..1), ``dagger``, and the
    run's ``setting`` (:class:`Variant`: figures order and colour settings by it)."""
    frame = _with_settings(frame)
    columns = ["backbone", "task", "method", "variant", "setting", "dropout", "seed", "hash", "step", "epoch",
               "score", "strict_score", "lenient_score", "invalid_rate", "dagger"]
    rows = []
    for _, run in frame[frame["status"] == "done"].iterrows() if not frame.empty else []:
        for point in run["history"] or []:
            rows.append({"backbone": run["backbone"], "task": run["task"], "method": run["method"],
                         "variant": run["variant"], "setting": run["setting"], "dropout": bool(run["dropout"]),
                         "seed": run["seed"],
                         "hash": run["hash"], "step": point.get("step"), "epoch": point.get("epoch"),
                         "score": point.get("lenient_score" if lenient else "score"),
                         "strict_score": point.get("score"), "lenient_score": point.get("lenient_score"),
                         "invalid_rate": point.get("invalid_rate"), "dagger": point.get("dagger")})
    return pd.DataFrame(rows, columns=columns)


def loss_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The training loss of every finished run, long form (``step``, ``loss``: mean token cross-entropy; the
    run's ``setting`` beside its ``variant`` label)."""
    frame = _with_settings(frame)
    rows = []
    for _, run in frame[frame["status"] == "done"].iterrows() if not frame.empty else []:
        for step, loss in run["loss_curve"] or []:
            rows.append({"backbone": run["backbone"], "task": run["task"], "method": run["method"],
                         "variant": run["variant"], "setting": run["setting"], "dropout": bool(run["dropout"]),
                         "seed": run["seed"], "step": step, "loss": loss})
    return pd.DataFrame(rows, columns=["backbone", "task", "method", "variant", "setting", "dropout", "seed", "step",
                                       "loss"])
