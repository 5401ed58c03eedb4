"""Metrics as GLUE / SuperGLUE report them, in percent (Table 1 of the paper), and the two invalid-label rules.

Formulas (``y`` gold, ``ŷ`` prediction, ``n`` examples; all values ×100):

- ``accuracy``  = (1/n) Σ [ŷ_i = y_i]
- ``f1``        = 2·P·R / (P + R) for the positive class 1 (``duplicate``, ``equivalent``), with
  P = TP/(TP+FP), R = TP/(TP+FN) (scikit-learn ``f1_score``; 0 when undefined)
- ``macro_f1``  = mean of the per-class F1 over the task's classes present in the gold labels or the (valid)
  predictions (CB, ``average="macro"``); a class absent from both is left out, not counted as 0, as in the
  reference GLUE/SuperGLUE metric scripts (scikit-learn's default label set). This matters for held-out halves
  and ``eval_limit`` subsets that miss a class
- ``mcc``       = (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) (Matthews; CoLA)
- ``pearson``   = cov(ŷ, y) / (σ_ŷ σ_y);  ``spearman`` = Pearson of the ranks (STS-B; 0 when a side is constant)
- ``f1a``       = binary F1 over all MultiRC answer options pooled
- ``em``        = fraction of MultiRC questions whose every answer option is right (grouped by question id)

A task with two metrics scores their mean (as Table 1 does); :func:`average_score` averages task scores.

Invalid outputs: a prediction is *invalid* when, after :func:`normalize` (strip, lowercase, collapse inner
whitespace), it is not one of the task's label words, or for a regression task not a number in [0, 5].

- **strict** (the paper's rule, §5): one invalid prediction on the evaluation set zeroes every metric of the
  task and sets the dagger flag († in Table 1).
- **lenient**: invalid predictions count as wrong. For a binary task the invalid prediction is replaced by the
  label that is *not* gold (a false negative on a positive, a false positive on a negative); for a multi-class
  task by a class outside the label set (wrong for accuracy, a missed gold class for macro-F1). For regression
  it is replaced by :data:`REGRESSION_FALLBACK` = 2.5, the midpoint of [0, 5] (a constant carries no
  information, so it can only dilute the correlation; it never depends on other predictions). When *every*
  prediction is invalid, every lenient metric is 0: nothing was measured (the stand-ins alone would give a
  binary MCC of -100, each one being the opposite of gold).
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

REGRESSION_FALLBACK = 2.5
REGRESSION_RANGE = (0.0, 5.0)
REGRESSION_STEP = 0.2

METRIC_LABELS = {
    "accuracy": "Acc.",
    "f1": "F1",
    "macro_f1": "F1",
    "mcc": "MCC",
    "pearson": "PCC",
    "spearman": "ρ",
    "f1a": "F1a",
    "em": "EM",
}

_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def normalize(text: str) -> str:
    """Light normalization applied to every prediction and label word: strip, lowercase, collapse spaces."""
    return _SPACES.sub(" ", str(text)).strip().lower()


def round_score(value: float, step: float = REGRESSION_STEP) -> float:
    """Round an STS-B score to the nearest multiple of ``step`` (0.2), clipped to [0, 5]; a tie goes to the even
    multiple, as T5's preprocessing does (``tf.round(x * 5) / 5`` rounds half to even: 0.5 -> 0.4, 0.7 -> 0.8)."""
    lo, hi = REGRESSION_RANGE
    scaled = float(value) / step
    k = math.floor(scaled)
    fraction = scaled - k
    if abs(fraction - 0.5) < 1e-6:  # a tie up to float error (3.3 / 0.2 = 16.499999999999996)
        k += k % 2
    elif fraction > 0.5:
        k += 1
    return min(hi, max(lo, round(k * step, 1)))


def score_to_text(value: float) -> str:
    """The STS-B target string: the score rounded to 0.2 with one decimal (``3.4``, ``5.0``)."""
    return f"{round_score(value):.1f}"


def parse_score(text: str) -> float | None:
    """Parse a generated STS-B score; ``None`` unless it is a plain decimal number in [0, 5]."""
    t = normalize(text)
    if not _NUMBER.match(t):
        return None
    value = float(t)
    lo, hi = REGRESSION_RANGE
    return value if lo <= value <= hi else None


# ----------------------------------------------------------------------------- metric functions


def _pct(x: float) -> float:
    x = float(x)
    return 0.0 if math.isnan(x) else 100.0 * x


def accuracy(gold: Sequence, pred: Sequence) -> float:
    return _pct(sum(int(g == p) for g, p in zip(gold, pred)) / len(gold))


def f1(gold: Sequence[int], pred: Sequence[int]) -> float:
    from sklearn.metrics import f1_score

    return _pct(f1_score(list(gold), list(pred), pos_label=1, average="binary", zero_division=0))


def macro_f1(gold: Sequence[int], pred: Sequence[int], labels: Sequence[int]) -> float:
    """Macro-F1 over the classes of ``labels`` that occur in ``gold`` or ``pred``. Predictions outside
    ``labels`` (the lenient rule's stand-in for an invalid label) are wrong answers, never a class of their own."""
    from sklearn.metrics import f1_score

    present = set(gold) | set(pred)
    classes = [label for label in labels if label in present]
    return _pct(f1_score(list(gold), list(pred), labels=classes, average="macro", zero_division=0))


def mcc(gold: Sequence[int], pred: Sequence[int]) -> float:
    from sklearn.metrics import matthews_corrcoef

    return _pct(matthews_corrcoef(list(gold), list(pred)))


def _constant(values: Sequence[float]) -> bool:
    return len(set(values)) <= 1


def pearson(gold: Sequence[float], pred: Sequence[float]) -> float:
    from scipy.stats import pearsonr

    if len(gold) < 2 or _constant(gold) or _constant(pred):
        return 0.0
    return _pct(pearsonr(list(pred), list(gold))[0])


def spearman(gold: Sequence[float], pred: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(gold) < 2 or _constant(gold) or _constant(pred):
        return 0.0
    return _pct(spearmanr(list(pred), list(gold))[0])


def multirc(gold: Sequence[int], pred: Sequence[int], groups: Sequence[str]) -> dict[str, float]:
    """``f1a``: binary F1 over all answer options; ``em``: share of question groups entirely right."""
    right: dict[str, bool] = {}
    for g, p, q in zip(gold, pred, groups):
        right[q] = right.get(q, True) and g == p
    return {"f1a": f1(gold, pred), "em": _pct(sum(right.values()) / len(right))}


def compute_metrics(names: Sequence[str], gold: Sequence, pred: Sequence, *,
                    labels: Sequence[int] = (), groups: Sequence[str] | None = None) -> dict[str, float]:
    """The named metrics (percent) of ``pred`` against ``gold``; all predictions must be valid values."""
    out: dict[str, float] = {}
    for name in names:
        if name in ("f1a", "em"):
            if groups is None:
                raise ValueError("MultiRC metrics need the question groups")
            out[name] = multirc(gold, pred, groups)[name]
        elif name == "accuracy":
            out[name] = accuracy(gold, pred)
        elif name == "f1":
            out[name] = f1(gold, pred)
        elif name == "macro_f1":
            out[name] = macro_f1(gold, pred, labels)
        elif name == "mcc":
            out[name] = mcc(gold, pred)
        elif name == "pearson":
            out[name] = pearson(gold, pred)
        elif name == "spearman":
            out[name] = spearman(gold, pred)
        else:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRIC_LABELS)}")
    return out


# ----------------------------------------------------------------------------- scores


@dataclasses.dataclass
class Score:
    """One evaluation of one task.

    ``metrics`` strict (paper rule), ``lenient`` with invalid predictions counted wrong, both in percent;
    ``score`` / ``lenient_score`` their means over the task's metrics; ``invalid_rate`` the fraction (0–1)
    of predictions that are not a valid label; ``dagger`` true when any prediction was invalid (the strict
    metrics are then all zero, † in Table 1).
    """

    metrics: dict[str, float]
    lenient: dict[str, float]
    score: float
    lenient_score: float
    invalid_rate: float
    dagger: bool
    n: int = 0
    n_invalid: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def format(self) -> str:
        """Table-1 style cell: ``81.9/86.3`` (``†`` appended when daggered)."""
        text = "/".join(f"{v:.1f}" for v in self.metrics.values())
        return text + (" †" if self.dagger else "")


def score_predictions(names: Sequence[str], gold: Sequence, parsed: Sequence, *, labels: Sequence[int] | None,
                      groups: Sequence[str] | None = None) -> Score:
    """Score parsed predictions (``None`` = invalid) under both rules.

    ``labels`` is the task's class ids, or ``None`` for regression.
    """
    n = len(gold)
    if n == 0 or len(parsed) != n:
        raise ValueError(f"need one prediction per example (got {len(parsed)} for {n} examples)")
    n_invalid = sum(p is None for p in parsed)
    if labels is None:
        filled = [REGRESSION_FALLBACK if p is None else p for p in parsed]
    elif len(labels) == 2:
        filled = [(labels[1] if g == labels[0] else labels[0]) if p is None else p for g, p in zip(gold, parsed)]
    else:
        filled = [-1 if p is None else p for p in parsed]
    kw = dict(labels=labels or (), groups=groups)
    # With no valid prediction nothing was measured: every lenient metric is 0, not what the stand-ins make of it
    # (each one the opposite of gold would give a binary MCC of -100).
    lenient = {name: 0.0 for name in names} if n_invalid == n else compute_metrics(names, gold, filled, **kw)
    strict = {k: 0.0 for k in lenient} if n_invalid else dict(lenient)
    return Score(metrics=strict, lenient=lenient, score=_mean(strict.values()),
                 lenient_score=_mean(lenient.values()), invalid_rate=n_invalid / n, dagger=n_invalid > 0,
                 n=n, n_invalid=n_invalid)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def task_score(value: Score | Mapping[str, float] | float, lenient: bool = False) -> float:
    """A task's single number: ``Score.score`` (or ``lenient_score``), the mean of a metrics dict, or a float."""
    if isinstance(value, Score):
        return value.lenient_score if lenient else value.score
    if isinstance(value, Mapping):
        return _mean(value.values())
    return float(value)


def average_score(scores: Mapping[str, Score | Mapping[str, float] | float], lenient: bool = False) -> float:
    """Overall average over tasks (Table 1's ``Avg.``): two-metric tasks are averaged first, then the tasks."""
    if not scores:
        raise ValueError("average_score: no task scores")
    return _mean(task_score(v, lenient) for v in scores.values())
