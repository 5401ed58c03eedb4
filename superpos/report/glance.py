"""Results at a glance: each claim of the paper, judged by a paired test on the runs a store holds.

The claims (paper §5, Figure 2, Tables 1–3, appendix A.2), each one or more comparisons of two settings:

- ``superpos``: SuperPos-Prompt scores above every other prompt method (Table 1, dropout off), per task;
- ``dropout``: removing the frozen network's dropout helps (Table 1, ✗ against ✓), per method and task run both
  ways; *not testable* on a backbone pretrained without dropout (the claim concerns T5, pretrained with 0.1):
  the row then gives the measured reason, the training loss with dropout on against off;
- ``m``: the score rises with m up to 128 (m = 128 against the smallest m) and levels off there (the largest m
  against 128), per task;
- ``softmax``: softmax weights do worse than plain superposition (Table 3, appendix A.2), per task;
- ``stability``: SuperPos varies least across tasks (Table 2): per seed, each method's standard deviation over
  tasks of its min-max scaled score (the paper's standardized scoring), SuperPos against each other method.

**The test** (:mod:`.stats`). Each comparison pairs the two settings' runs by seed (same training sample, data
order and evaluation examples) and takes the per-seed differences of the lenient test score (read at the point
chosen on dev by that score; invalid labels count as wrong answers), signed so that a positive difference
points the paper's way. The strict score (the paper's rule: one invalid label zeroes the task, †) stands beside
it, with how many seeds it zeroed: on 500 test examples one stray invalid output among hundreds of right ones
zeroes a run, so strict differences are mostly which seeds drew a † and carry little information. Reported:
their mean, its 95 % t-interval over seeds, the paired t-test's p-value and its Holm-adjusted value over the
comparisons of the claim. Verdicts: ``supported`` (adjusted p < 0.05, the paper's way), ``contradicted``
(adjusted p < 0.05, the other way), ``inconclusive``, or ``not testable`` with the reason (fewer than two
paired seeds; dropout on a backbone pretrained without it; with ``gate``, a task outside the learnability gate of
:func:`~superpos.report.baselines.learnability_gate`: its differences are shown, they enter no test). "Levels off" is a claim of no gain: supported when
the interval's upper end lies below :data:`LEVEL_MARGIN` points of gain beyond m = 128, contradicted when the
larger m gains significantly. A claim is contradicted when any of its comparisons is, supported when all are,
inconclusive otherwise.
"""
from __future__ import annotations

import math

import pandas as pd

from .names import task_order
from .scores import with_variants
from .stats import ALPHA, holm, paired_test

CLAIMS = {
    "superpos": "SuperPos-Prompt beats the other prompt methods",
    "dropout": "Removing dropout helps",
    "m": "Gains level off near m = 128",
    "softmax": "Softmax weights do worse",
    "stability": "SuperPos is more stable across tasks",
}
#: "Levels off": a gain beyond m = 128 smaller than this many points counts as none.
LEVEL_MARGIN = 2.0
#: Prompt methods SuperPos is compared with in Table 1, and those of Table 2's stability rule.
OTHER_METHODS = ("simple", "residual", "attempt", "ept")
STABILITY_METHODS = ("simple", "residual", "superpos")
COLUMNS = ["claim", "task", "comparison", "pairs", "setting", "against", "strict", "difference", "ci_low", "ci_high",
           "p", "p_holm", "verdict"]


def seed_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished run: ``backbone, task, variant, dropout, seed``, ``score`` (the lenient test score at
    the point chosen on dev by it: what the tests compare), ``strict`` (the strict test score at the strict-best
    point, beside it) and ``final_loss`` (the loss curve's last point)."""
    columns = ["backbone", "task", "method", "variant", "dropout", "seed", "score", "strict", "final_loss", "m"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = with_variants(runs) if "variant" not in runs.columns else runs
    done = runs[runs["status"] == "done"]
    return pd.DataFrame({
        "backbone": done["backbone"], "task": done["task"], "method": done["method"], "variant": done["variant"],
        "dropout": done["dropout"].astype(bool), "seed": done["seed"],
        "score": pd.to_numeric(done["test_lenient_score"], errors="coerce"),
        "strict": pd.to_numeric(done["test_score"], errors="coerce"),
        "final_loss": [curve[-1][1] if curve else math.nan for curve in done["loss_curve"]],
        "m": done["m"] if "m" in done.columns else math.nan,
    }, columns=columns).reset_index(drop=True)


def _scores(seeds: pd.DataFrame, task: str, variant: str, dropout: bool = False) -> pd.DataFrame:
    """``seed -> (score, strict)`` of one setting on one task."""
    rows = seeds[(seeds["task"] == task) & (seeds["variant"] == variant) & (seeds["dropout"] == dropout)]
    return rows.set_index("seed")[["score", "strict"]].dropna(subset=["score"])


def _mean_text(values: pd.Series) -> str:
    return f"{values.mean():.1f}" if len(values) else "–"


def _strict_text(values: pd.Series) -> str:
    """The strict scores' mean and how many of them the † rule zeroed: ``52.1 (†2/5)``."""
    values = values.dropna()
    if not len(values):
        return "–"
    zeroed = int((values == 0).sum())
    return f"{values.mean():.1f}" + (f" (†{zeroed}/{len(values)})" if zeroed else "")


class _Claim:
    """The comparisons of one claim, collected, then judged together (Holm's correction spans them)."""

    def __init__(self, key: str, excluded: dict[str, str] | None = None):
        self.key, self.rows, self.excluded = key, [], excluded or {}

    def pair(self, task: str, comparison: str, ours: pd.DataFrame, other: pd.DataFrame, *,
             rule: str = "differs") -> None:
        """Compare ``ours`` with ``other`` (``seed -> score, strict``; positive differences = the paper's way)."""
        if ours.empty or other.empty:
            return
        seeds = sorted(set(ours.index) & set(other.index))
        test = paired_test([ours.loc[s, "score"] - other.loc[s, "score"] for s in seeds])
        self.rows.append({"claim": CLAIMS[self.key], "task": task, "comparison": comparison, "pairs": len(seeds),
                          "setting": _mean_text(ours.loc[seeds, "score"]),
                          "against": _mean_text(other.loc[seeds, "score"]),
                          "strict": f"{_strict_text(ours.loc[seeds, 'strict'])} vs {_strict_text(other.loc[seeds, 'strict'])}",
                          "difference": test["mean"], "ci_low": test["low"], "ci_high": test["high"],
                          "p": test["p"], "rule": rule})
        if task in self.excluded:  # shown, but outside the reference: no test, no share of Holm's correction
            self.rows[-1].update(rule="none", verdict=f"not testable: {self.excluded[task]}")

    def untestable(self, task: str, comparison: str, setting: str, against: str, reason: str) -> None:
        self.rows.append({"claim": CLAIMS[self.key], "task": task, "comparison": comparison, "pairs": 0,
                          "setting": setting, "against": against, "strict": "–", "difference": math.nan, "ci_low": math.nan,
                          "ci_high": math.nan, "p": math.nan, "rule": "none", "verdict": f"not testable: {reason}"})

    def judged(self) -> list[dict]:
        adjusted = holm([row["p"] if row["rule"] == "differs" and row["pairs"] >= 2 else math.nan
                         for row in self.rows])
        for row, p_holm in zip(self.rows, adjusted):
            row["p_holm"] = p_holm
            if "verdict" in row:
                continue
            if row["pairs"] < 2:
                row["verdict"] = f"not testable: {row['pairs']} paired seed (no interval)"
            elif row["rule"] == "levels off":
                row["verdict"] = ("supported" if row["ci_high"] < LEVEL_MARGIN else
                                  "contradicted" if row["ci_low"] > 0 else "inconclusive")
            elif p_holm < ALPHA:
                row["verdict"] = "supported" if row["difference"] > 0 else "contradicted"
            else:
                row["verdict"] = "inconclusive"
        return [{key: row.get(key) for key in COLUMNS} for row in self.rows]


def glance(runs: pd.DataFrame, *, gate: bool = False) -> pd.DataFrame:
    """One row per (claim, task, comparison): the settings' mean lenient test scores over the paired seeds (strict
    ones beside them, with their † count), the
    mean paired difference (points; positive: the paper's way), its 95 % t-interval, p and Holm's p, the verdict.
    ``runs`` is :func:`superpos.engine.load_records` output. ``gate``: judge only the tasks that pass the
    learnability gate (a profile with ``gate_tasks``); the others' comparisons are "not testable"."""
    from ..backbones.load import PRETRAINED_WITHOUT_DROPOUT

    seeds = seed_scores(runs)
    excluded = gate_exclusions(runs, seeds["task"].unique()) if gate else {}
    claims = {key: _Claim(key, excluded) for key in CLAIMS}
    for task in task_order(seeds["task"].unique()):
        superpos = _scores(seeds, task, "superpos")
        for method in OTHER_METHODS:
            claims["superpos"].pair(task, f"SuperPos − {method}", superpos, _scores(seeds, task, method))
        for method in ("simple", "residual", "attempt", "superpos", "ept"):
            off, on = _scores(seeds, task, method), _scores(seeds, task, method, dropout=True)
            if off.empty or on.empty:
                continue
            backbones = set(seeds[(seeds["task"] == task) & (seeds["variant"] == method)]["backbone"])
            if backbones & set(PRETRAINED_WITHOUT_DROPOUT):
                claims["dropout"].untestable(task, f"{method}: dropout off − on", _mean_text(off["score"]),
                                             _mean_text(on["score"]), _dropout_reason(seeds, task, method))
            else:
                claims["dropout"].pair(task, f"{method}: dropout off − on", off, on)
        m_values = sorted(int(m) for m in seeds[(seeds["task"] == task) & (seeds["method"] == "superpos")
                                                & (seeds["variant"].str.startswith("superpos m="))]["m"].dropna())
        smaller, larger = [m for m in m_values if m < 128], [m for m in m_values if m > 128]
        if smaller:
            claims["m"].pair(task, f"m = 128 − m = {smaller[0]} (rises)", superpos,
                             _scores(seeds, task, f"superpos m={smaller[0]}"))
        if larger:
            # the paper's way is "no gain": the difference is signed 128 − larger, the margin applies to the gain
            gain = _scores(seeds, task, f"superpos m={larger[-1]}")
            claims["m"].pair(task, f"m = {larger[-1]} − m = 128 (levels off)", gain, superpos, rule="levels off")
        claims["softmax"].pair(task, "SuperPos − SuperPos (softmax)", superpos,
                               _scores(seeds, task, "superpos (softmax)"))
    _stability(seeds[~seeds["task"].isin(list(excluded))], claims["stability"])
    rows = [row for claim in claims.values() for row in claim.judged()]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for column in ("difference", "ci_low", "ci_high"):
        frame[column] = frame[column].astype(float).round(1)
    for column in ("p", "p_holm"):
        frame[column] = frame[column].astype(float).round(3)
    return frame


def gate_exclusions(runs: pd.DataFrame, tasks) -> dict[str, str]:
    """Task -> why it is outside the reference, for each of ``tasks`` that does not pass the learnability gate."""
    from .baselines import learnability_gate

    table = learnability_gate(runs).set_index("task") if not runs.empty else pd.DataFrame()
    reasons = {}
    for task in tasks:
        why = table.loc[task, "gate"] if task in table.index else "no simple prompt tuning run to gate it"
        if why != "passes":
            reasons[task] = f"the task is outside the learnability gate ({why.removeprefix('fails: ')})"
    return reasons


def _dropout_reason(seeds: pd.DataFrame, task: str, method: str) -> str:
    """The measured reason a dropout comparison says nothing of the paper's claim."""
    rows = seeds[(seeds["task"] == task) & (seeds["variant"] == method)]
    on, off = rows[rows["dropout"]], rows[~rows["dropout"]]
    paired = sorted(set(on["seed"]) & set(off["seed"]))
    loss_on = on[on["seed"].isin(paired)]["final_loss"].mean()
    loss_off = off[off["seed"].isin(paired)]["final_loss"].mean()
    return (f"the backbone was pretrained without dropout; with it added, the final training loss is "
            f"{loss_on:.2f} against {loss_off:.2f} without ({len(paired)} seed{'s' if len(paired) != 1 else ''})")


def _stability(seeds: pd.DataFrame, claim: _Claim) -> None:
    """Per seed, each method's std over tasks of its min-max scaled score (Table 2's rule), over the tasks where
    every compared method ran; SuperPos's std against each other method's (positive: SuperPos steadier)."""
    from .stability import standardized_overall

    base = seeds[seeds["variant"].isin(STABILITY_METHODS) & ~seeds["dropout"]]
    per_seed = {}
    for seed, group in base.groupby("seed"):
        complete = [t for t, rows in group.groupby("task") if set(rows["variant"]) == set(STABILITY_METHODS)]
        if len(complete) < 3:
            continue
        overall = standardized_overall(group[group["task"].isin(complete)], setting=("variant",))
        per_seed[seed] = dict(zip(overall["variant"], overall["std"]))
    if not per_seed:
        return
    tasks = len(set(base["task"]))
    ours = pd.Series({seed: spread["superpos"] for seed, spread in per_seed.items()})
    for method in STABILITY_METHODS[:-1]:
        other = pd.Series({seed: spread[method] for seed, spread in per_seed.items()})
        claim.pair(f"{tasks} tasks", f"std over tasks: {method} − SuperPos", pd.DataFrame({"score": -ours, "strict": math.nan}),
                   pd.DataFrame({"score": -other, "strict": math.nan}))
        claim.rows[-1].update(setting=_mean_text(ours), against=_mean_text(other), strict="–")


def claim_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One line per claim from :func:`glance`'s rows: the claim's verdict and how its comparisons came out."""
    rows = []
    for claim, group in table.groupby("claim", sort=False):
        verdicts = [v.split(":")[0] for v in group["verdict"]]
        counts = {v: verdicts.count(v) for v in ("supported", "contradicted", "inconclusive", "not testable")}
        testable = len(verdicts) - counts["not testable"]
        if not testable:
            verdict = "not testable"
        elif counts["contradicted"]:
            verdict = "contradicted"
        elif counts["supported"] == testable:
            verdict = "supported"
        else:
            verdict = "inconclusive"
        detail = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        rows.append({"claim": claim, "verdict": verdict, "comparisons": f"{len(verdicts)}: {detail}"})
    return pd.DataFrame(rows, columns=["claim", "verdict", "comparisons"])


def _number(value: float, signed: bool = False) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        (f"{value:+.1f}" if signed else f"{value:.1f}")


def glance_markdown(runs: pd.DataFrame, wanted: int | None = None, *, gate: bool = False) -> str:
    """The README's "Results at a glance" block for ``runs`` (every sentence and number computed here): what the
    runs are, one line per claim, then every comparison with its paired difference, interval and verdict.
    ``wanted``: how many runs the profile asks for (said when the runs are fewer); ``gate``: as :func:`glance`."""
    from .output import markdown_table, mixed_provenance

    done = runs[runs["status"] == "done"] if not runs.empty else runs
    if done.empty:
        return "No finished run yet.\n"
    seeds = sorted(int(s) for s in done["seed"].unique())
    tasks = task_order(done["task"].unique())
    precisions = sorted({str(p) for p in done.get("precision", pd.Series(dtype=object)).dropna()})
    machines = sorted({str(m) for m in done.get("machine", pd.Series(dtype=object)).dropna()})
    held = f"{len(done)} of the {wanted} runs" if wanted and wanted != len(done) else f"all {len(done)} runs"
    lines = [f"From {held} ({', '.join(sorted(set(done['backbone'])))}; tasks {', '.join(tasks)}; seeds "
             f"{', '.join(map(str, seeds))}; {'/'.join(precisions) or 'precision not recorded'}"
             f"{'; ' + ' / '.join(machines) if machines else ''}). Differences are in "
             "points of the lenient test score (invalid labels count as wrong), paired by seed, positive when they "
             "point the paper's way; the strict score beside it, with the seeds its † rule zeroed; 95 % "
             "t-intervals over seeds; p-values Holm-corrected within each claim."
             + (" Only tasks that pass the learnability gate (docs/TASKS.md) are tested." if gate else ""), ""]
    lines.extend(mixed_provenance(done))
    table = glance(done, gate=gate)
    summary = claim_summary(table)
    lines += [markdown_table(summary.rename(columns={"claim": "Claim of the paper", "verdict": "Verdict",
                                                     "comparisons": "Comparisons: verdicts"})), ""]
    shown = pd.DataFrame({
        "Claim": table["claim"], "Task": table["task"], "Comparison": table["comparison"],
        "Seeds": table["pairs"], "Means": [f"{a} vs {b}" for a, b in zip(table["setting"], table["against"])],
        "Strict means": table["strict"],
        "Difference [95 % CI]": [f"{_number(d, True)} [{_number(lo, True)}, {_number(hi, True)}]" if d == d else "–"
                                 for d, lo, hi in zip(table["difference"], table["ci_low"], table["ci_high"])],
        "p (Holm)": [f"{p:.3f}" if p == p else "–" for p in table["p_holm"]],
        "Verdict": table["verdict"]})
    lines.append(markdown_table(shown))
    return "\n".join(lines).strip() + "\n"

