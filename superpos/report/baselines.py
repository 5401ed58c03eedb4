"""The score a model earns without learning: the best constant answer, per task, on a run's own test examples.

For a classification task every label word is tried as the one answer to every test example and the best task
score is kept (the majority class for accuracy; for F1 the positive class can score higher, so "majority class"
alone would understate the bar a method must clear). A regression task's constant answer correlates with nothing:
0. Table 1's majority-class row and the learnability gate (docs/TASKS.md) read these numbers.
"""
from __future__ import annotations

import dataclasses
import functools
import json

import pandas as pd

from ..engine.config import RunConfig
from ..tasks import get_task

MAJORITY = "majority class"  # the method and variant name of baseline rows


@functools.lru_cache(maxsize=64)
def _constant_score(config_json: str) -> tuple[str, float, tuple]:
    config = RunConfig.from_dict(json.loads(config_json))
    task, test = get_task(config.task), config.splits().test
    best = ("-", 0.0, ())
    for word in task.label_words or ["2.5"]:
        score = task.score([word] * len(test), test)
        if task.is_regression or score.score > best[1]:
            best = (word, score.score, tuple(score.metrics.items()))
        if task.is_regression:
            break
    return best


def constant_baseline(config: RunConfig | dict) -> dict:
    """``{"answer", "score", "metrics"}``: the best constant answer on ``config``'s test examples and its scores."""
    config = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
    answer, score, metrics = _constant_score(json.dumps(config.to_dict(), sort_keys=True))
    return {"answer": answer, "score": score, "metrics": dict(metrics)}


def baseline_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per task of ``runs`` (a :func:`~superpos.engine.load_records` frame), in the shape of
    :func:`~superpos.report.task_scores` rows, for the best constant answer on that task's test examples (every
    run of a task is scored on the same ones: the first run's config fixes them)."""
    rows = []
    done = runs[runs["status"] == "done"] if not runs.empty else runs
    fields = [field.name for field in dataclasses.fields(RunConfig)]
    for (backbone, task), group in done.groupby(["backbone", "task"], sort=False):
        config = {key: group.iloc[0][key] for key in fields if key in group.columns}
        config.update(method="simple", method_config={}, sources=[], dropout=False)
        baseline = constant_baseline(config)
        rows.append({"backbone": backbone, "method": MAJORITY, "variant": MAJORITY, "dropout": False, "task": task,
                     "setting": None, "score": baseline["score"], "score_std": 0.0, "seeds": 1, "failed": 0,
                     "daggers": 0, "dagger": False, "invalid_rate": 0.0, "metrics": baseline["metrics"],
                     "strict_score": baseline["score"], "strict_std": 0.0, "lenient_score": baseline["score"],
                     "lenient_std": 0.0, "answer": baseline["answer"]})
    return pd.DataFrame(rows)


#: The learnability gate (docs/TASKS.md): a task enters a reference when simple prompt tuning's 95 % interval over
#: seeds lies at least GATE_MARGIN points above the best constant answer, and below GATE_CEILING (room above).
GATE_MARGIN = 10.0
GATE_CEILING = 95.0


def learnability_gate(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per task with simple prompt tuning runs (default config, dropout off) in ``runs``: the best constant
    answer's score, simple prompt tuning's mean lenient test score over seeds (invalid labels count as wrong; the
    strict rule's † zeros are a lottery on 500 examples) with its 95 % t-interval, its strict mean and † count
    beside, and whether the task passes the gate (interval ≥ constant + ``GATE_MARGIN`` and < ``GATE_CEILING``)."""
    from .names import task_order
    from .scores import with_variants
    from .stats import t_interval

    columns = ["task", "constant answer", "constant score", "seeds", "simple PT", "ci_low", "ci_high",
               "strict (†)", "gate"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = with_variants(runs) if "variant" not in runs.columns else runs
    simple = runs[(runs["variant"] == "simple") & ~runs["dropout"].astype(bool) & (runs["status"] == "done")]
    constants = baseline_scores(simple).set_index("task") if not simple.empty else pd.DataFrame()
    rows = []
    for task in task_order(simple["task"].unique()):
        scores = pd.to_numeric(simple[simple["task"] == task]["test_lenient_score"], errors="coerce").dropna()
        strict = pd.to_numeric(simple[simple["task"] == task]["test_score"], errors="coerce").dropna()
        zeroed = int((strict == 0).sum())
        mean, low, high = t_interval(list(scores))
        constant = float(constants.loc[task, "score"])
        passes = len(scores) >= 2 and low >= constant + GATE_MARGIN and high < GATE_CEILING
        why = ("passes" if passes else "1 seed: no interval" if len(scores) < 2 else
               f"fails: interval reaches {high:.1f} (≥ {GATE_CEILING:.0f})" if high >= GATE_CEILING else
               f"fails: interval starts at {low:.1f}, under {constant + GATE_MARGIN:.1f}")
        rows.append({"task": task, "constant answer": constants.loc[task, "answer"], "constant score": constant,
                     "seeds": len(scores), "simple PT": mean, "ci_low": low, "ci_high": high,
                     "strict (†)": f"{strict.mean():.1f}" + (f" (†{zeroed}/{len(strict)})" if zeroed else ""),
                     "gate": why})
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("constant score", "simple PT", "ci_low", "ci_high"):
        frame[column] = frame[column].astype(float).round(1)
    return frame


def with_baseline(scores: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``scores`` (:func:`~superpos.report.task_scores` rows) with one row per backbone for the best constant
    answer on each task of ``runs`` (Table 1's majority-class row)."""
    baseline = baseline_scores(runs)
    if baseline.empty:
        return scores
    return pd.concat([scores, baseline[[c for c in baseline.columns if c in scores.columns]]], ignore_index=True)
