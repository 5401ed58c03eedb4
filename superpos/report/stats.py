"""The statistics behind every verdict: paired differences over seeds, their t-interval, Holm's correction.

Runs of two settings with the same seed share the training sample, the data order and (for methods that sample
it) the initial prompt; with every seed scored on the same dev and test examples, a seed's two scores differ by
the setting and by training noise alone. So each comparison is made on the per-seed differences
``d_s = score_A(s) - score_B(s)`` (Dror et al. 2018; Bouthillier et al. 2021 on seeds as the unit of variance):

- mean ``d̄``, its 95 % Student-t interval ``d̄ ± t_{0.975, n-1} · sd(d) / √n`` over the ``n`` seeds;
- the two-sided paired t-test's p-value, ``t = d̄ / (sd(d) / √n)`` with ``n - 1`` degrees of freedom;
- over the comparisons of one claim, Holm's step-down correction of those p-values (family-wise error 5 %).

The t-interval over seeds is chosen over a bootstrap over seeds and examples because the seeds, not the
examples, carry most of the variance here (each seed's test set is the same ≥ 400 examples), and because with
five seeds a bootstrap over seeds has only 126 distinct resamples.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats

ALPHA = 0.05


def t_interval(values: Sequence[float], confidence: float = 1 - ALPHA) -> tuple[float, float, float]:
    """``(mean, low, high)``: the Student-t interval of the mean of ``values`` (n ≥ 2; NaN bounds for n < 2)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def paired_test(differences: Sequence[float]) -> dict:
    """The paired comparison of per-seed differences: ``n``, ``mean``, 95 % ``low``/``high`` and the two-sided
    t-test's ``p`` (1 when every difference is 0, 0 when they are all equal and not 0; NaN for n < 2)."""
    diffs = [float(d) for d in differences]
    mean, low, high = t_interval(diffs)
    n = len(diffs)
    if n < 2:
        p = math.nan
    else:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        if sd == 0:
            p = 1.0 if mean == 0 else 0.0
        else:
            p = float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    return {"n": n, "mean": mean, "low": low, "high": high, "p": p}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN and does not count as a test):
    the k-th smallest of m p-values is multiplied by ``m - k + 1``, then made non-decreasing, capped at 1."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(indexed)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[i] = running
    return adjusted
