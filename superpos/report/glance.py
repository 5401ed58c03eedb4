"""Results at a glance: each claim of the paper, judged on the runs a store holds.

The claims (paper §5, Figure 2, Tables 1–3, appendix A.2), each a comparison of two settings per task:

- ``superpos``: SuperPos-Prompt scores above every other prompt method (Table 1, dropout off);
- ``dropout``: removing the frozen network's dropout helps (Table 1, ✗ against ✓), for each method run both ways;
- ``m``: the score grows with m up to 128 and levels off there (Figure 2c): m = 128 against the smallest m,
  and m = 128 against the largest;
- ``softmax``: softmax weights do worse than plain superposition (Table 3, appendix A.2);
- ``stability``: SuperPos varies least across tasks (Table 2): the standard deviation over tasks of each
  method's score, min-max scaled per task over the methods (the paper's standardized scoring).

**The rule.** A difference between two settings counts when it is larger than the larger of their standard
deviations over seeds (and at least one point). Then the claim is ``supported`` when the difference points
the paper's way and ``not supported`` when it points the other way; otherwise ``inconclusive``. With a single
seed there is no spread to judge by: the verdict is ``inconclusive (1 seed)``, and the direction is given.
Scores are the strict ones (the paper's rule: an invalid label zeroes the task); lenient ones stand beside.
"""
from __future__ import annotations

import math

import pandas as pd

from .names import task_order
from .scores import task_scores

CLAIMS = {
    "superpos": "SuperPos-Prompt beats the other prompt methods",
    "dropout": "Removing dropout helps",
    "m": "Gains level off near m = 128",
    "softmax": "Softmax weights do worse",
    "stability": "SuperPos is more stable across tasks",
}


def _cell(row: pd.Series | None) -> str:
    if row is None:
        return "–"
    std = f" ± {row['strict_std']:.1f}" if row["seeds"] > 1 else ""
    return f"{row['strict_score']:.1f}{std} (lenient {row['lenient_score']:.1f}, {int(row['seeds'])} seed" \
           f"{'s' if row['seeds'] > 1 else ''})"


def _verdict(ours: pd.Series, other: pd.Series, *, higher_is_paper: bool = True) -> tuple[str, float]:
    """``(verdict, difference)`` for "ours beats other" under the module's rule."""
    difference = ours["strict_score"] - other["strict_score"]
    if not higher_is_paper:
        difference = -difference
    if min(ours["seeds"], other["seeds"]) < 2:
        direction = "as the paper" if difference > 0 else "against the paper" if difference < 0 else "no difference"
        return f"inconclusive (1 seed; {direction})", difference
    margin = max(ours["strict_std"], other["strict_std"], 1.0)
    if difference > margin:
        return "supported", difference
    if difference < -margin:
        return "not supported", difference
    return "inconclusive", difference


def _row(scores: pd.DataFrame, task: str, variant: str, dropout: bool = False) -> pd.Series | None:
    match = scores[(scores["task"] == task) & (scores["variant"] == variant) & (scores["dropout"] == dropout)
                   & (scores["seeds"] > 0)]
    return match.iloc[0] if len(match) else None


def glance(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, task, comparison): both settings' mean ± std over seeds, the difference in points
    (positive: the paper's way) and the verdict. ``runs`` is :func:`superpos.engine.load_records` output."""
    scores = task_scores(runs)
    rows = []

    def add(claim: str, task: str, what: str, ours, other, **kwargs) -> None:
        if ours is None or other is None:
            return
        verdict, difference = _verdict(ours, other, **kwargs)
        rows.append({"claim": CLAIMS[claim], "task": task, "comparison": what, "setting": _cell(ours),
                     "against": _cell(other), "difference": round(difference, 1), "verdict": verdict})

    for task in task_order(scores["task"].unique()):
        superpos = _row(scores, task, "superpos")
        for method in ("simple", "residual", "attempt", "ept"):
            add("superpos", task, f"SuperPos vs {method}", superpos, _row(scores, task, method))
        for method in ("simple", "residual", "attempt", "superpos", "ept"):
            add("dropout", task, f"{method}: dropout off vs on", _row(scores, task, method),
                _row(scores, task, method, dropout=True))
        m_values = sorted(int(m) for m in scores[(scores["task"] == task) & (scores["method"] == "superpos")
                                                 & ~scores["softmax"].fillna(False).astype(bool)
                                                 & ~scores["dropout"].astype(bool)]["m"].dropna().unique())
        smaller, larger = [m for m in m_values if m < 128], [m for m in m_values if m > 128]
        if smaller:
            add("m", task, f"m = 128 vs m = {smaller[0]} (rises)", superpos,
                _row(scores, task, f"superpos m={smaller[0]}"))
        larger_row = _row(scores, task, f"superpos m={larger[-1]}") if larger else None
        if larger_row is not None and superpos is not None:
            # Levelling off: the larger m gains nothing beyond the spread over seeds.
            verdict, gain = _verdict(larger_row, superpos)
            if verdict.startswith("inconclusive (1"):
                verdict = f"inconclusive (1 seed; m = {larger[-1]} {gain:+.1f} points)"
            else:
                verdict = "not supported" if verdict == "supported" else "supported"
            rows.append({"claim": CLAIMS["m"], "task": task, "comparison": f"m = {larger[-1]} vs m = 128 (levels off)",
                         "setting": _cell(larger_row), "against": _cell(superpos), "difference": round(-gain, 1),
                         "verdict": verdict})
        add("softmax", task, "SuperPos vs SuperPos (softmax)", superpos, _row(scores, task, "superpos (softmax)"))
    rows.extend(_stability(scores))
    return pd.DataFrame(rows, columns=["claim", "task", "comparison", "setting", "against", "difference", "verdict"])


def _stability(scores: pd.DataFrame) -> list[dict]:
    """Standard deviation over tasks of each prompt method's min-max scaled score (dropout off); needs at
    least three tasks where every compared method ran."""
    from .stability import standardized_overall

    methods = ("simple", "residual", "superpos")
    base = scores[scores["variant"].isin(methods) & ~scores["dropout"].astype(bool) & (scores["seeds"] > 0)]
    complete = [t for t, group in base.groupby("task") if set(group["variant"]) == set(methods)]
    if len(complete) < 3:
        return []
    overall = standardized_overall(base[base["task"].isin(complete)], setting=("variant",))
    spread = dict(zip(overall["variant"], overall["std"]))
    ours = spread.pop("superpos", math.nan)
    verdict = "supported" if ours < min(spread.values()) else "not supported"
    return [{"claim": CLAIMS["stability"], "task": f"{len(complete)} tasks",
             "comparison": "std over tasks of the min-max scaled score (Table 2's rule)", "setting": f"SuperPos {ours:.1f}",
             "against": ", ".join(f"{name} {value:.1f}" for name, value in spread.items()),
             "difference": round(min(spread.values()) - ours, 1), "verdict": verdict}]
