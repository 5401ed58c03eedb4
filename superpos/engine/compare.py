"""Fresh runs against the committed reference: identical, within tolerance, or different.

``make reproduce`` trains every run of a profile into its working store, then compares each fresh record
with the reference record of the same run hash (``results/<profile>/reference/records``). The hash covers the
whole configuration and ``CODE_VERSION``, so a reference made by code whose results differ on purpose has no
counterpart and is reported as ``no reference``, never compared as if it were current.

- **identical**: the evaluation history, the loss curve and the best point are equal, value for value. On the
  same kind of machine and precision every run of the package is deterministic, so this is the expected verdict
  there.
- **within tolerance**: every compared number is within :data:`TOLERANCE`: the loss drifted in its late digits
  and greedy decoding flipped a few evaluation examples.
- **different**: anything else; the row says which number moved and by how much.

Another precision or another CPU's kernels are not rounding noise at these budgets: measured on the quick
profile, runs in bf16 against an fp32 reference (16 runs) and fp32 runs on an AVX-512 CPU against a reference
made on an AVX2 CPU (6 runs) part within a few steps and end as far apart as two seeds: every run "different",
while mean lenient scores and final losses stay close (docs/SPEED.md, section 0). So a run is compared run for
run only on the machine kind and precision of its reference. Elsewhere the runs are judged as a sample
(:func:`compare_samples`): paired with their references run by run, is the mean difference of the scores
consistent with zero? The summary line gives that verdict whenever a run is *different*, and names a precision
or a machine kind (records name their CPU kernels) that differs.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd
from scipy import stats

from ..config import stable_hash

#: Largest difference still called a reproduction. Scores are in points (0-100): 3 points is 2-4 examples of
#: a 64-100-example evaluation, well under the spread between seeds of one setting (the README's "Results at a
#: glance" gives the measured spread). The final training loss may move by 5 % of its value.
TOLERANCE = {"score": 3.0, "lenient_score": 3.0, "invalid_rate": 3.0, "final_loss": 0.05}
VERDICTS = ("identical", "within tolerance", "different", "no reference", "failed")
#: Confidence of the interval on the mean paired difference, and the fewest paired runs it is computed from
#: (below 3 the Student t interval of a mean is too wide to say anything).
CONFIDENCE, MIN_PAIRED = 0.95, 3


def headline(record: dict) -> dict:
    """The numbers a reproduction is judged on: the best point's strict test score, the lenient test score at the
    point chosen by it (what the glance's tests compare; under protocol heldout the history holds dev scores), the
    invalid-label rate (%) at the best point, and the last training loss."""
    best = (record.get("best") or {}).get("test") or {}
    lenient = ((record.get("best_lenient") or {}).get("test") or {}).get("lenient_score")
    curve = record.get("loss_curve") or []
    invalid = best.get("invalid_rate")
    return {"score": best.get("score"), "lenient_score": lenient,
            "invalid_rate": None if invalid is None else 100 * invalid,
            "final_loss": curve[-1][1] if curve else None}


def _identical(fresh: dict, reference: dict) -> bool:
    return all(fresh.get(key) == reference.get(key) for key in ("history", "loss_curve", "best", "steps"))


def _setting_key(config: dict) -> str:
    """A key shared by the runs whose configurations differ in the seed alone (the label does not show every field)."""
    return stable_hash({key: value for key, value in config.items() if key != "seed"})


def _setting(config: dict) -> str:
    """The run's configuration without its seed: ``bbc-topic/simple init=vocab n_prompts=10 dropout=off``."""
    from ..methods import METHODS

    spec = METHODS.get(config["method"])
    named = set(spec.variant_fields) if spec is not None else set()  # the fields its registration names variants by
    extra = "".join(f" {k}={v}" for k, v in sorted((config.get("method_config") or {}).items()) if k in named)
    return f"{config['task']}/{config['method']}{extra} dropout={'on' if config['dropout'] else 'off'}"


def compare_record(fresh: dict, reference: dict | None) -> dict:
    """One row: the run, its verdict, and fresh/reference/difference of each :func:`headline` number."""
    config = fresh["config"]
    row = {"hash": fresh["hash"], "run": f"{_setting(config)} seed={config['seed']}", "setting": _setting_key(config)}
    ours = headline(fresh)
    theirs = headline(reference) if reference is not None else {}
    worst = None
    for key, value in ours.items():
        other = theirs.get(key)
        row[key] = value
        row[f"reference_{key}"] = other
        delta = None if value is None or other is None else value - other
        row[f"delta_{key}"] = delta
        if delta is not None:
            limit = TOLERANCE[key] * (abs(other) if key == "final_loss" else 1.0)
            if abs(delta) > limit + 1e-12:
                worst = worst or key
    row["precision"] = (fresh.get("precision") or {}).get("dtype")
    row["reference_precision"] = ((reference or {}).get("precision") or {}).get("dtype")
    row["device"] = (fresh.get("provenance") or {}).get("device")
    row["reference_device"] = ((reference or {}).get("provenance") or {}).get("device")
    if fresh.get("status") != "done":
        row["verdict"], row["detail"] = "failed", str(fresh.get("reason") or "")
    elif reference is None or reference.get("status") != "done":
        row["verdict"], row["detail"] = "no reference", "no finished reference record with this run hash"
    elif _identical(fresh, reference):
        row["verdict"], row["detail"] = "identical", ""
    elif worst is None and all(row[f"delta_{k}"] is not None for k in ours if theirs.get(k) is not None):
        row["verdict"], row["detail"] = "within tolerance", ""
    else:
        moved = worst or "score"
        row["verdict"] = "different"
        row["detail"] = f"{moved} {row[f'reference_{moved}']} -> {row[moved]}"
    return row


def compare_runs(fresh: Iterable[dict], reference_store) -> pd.DataFrame:
    """:func:`compare_record` for every fresh record against ``reference_store`` (a ``ResultsStore``)."""
    rows = [compare_record(record, reference_store.get(record["hash"])) for record in fresh]
    return pd.DataFrame(rows, columns=None if rows else ["hash", "run", "verdict"])


def summary_line(comparison: pd.DataFrame) -> str:
    """``reproduced 18/18 runs: 16 identical, 2 within tolerance, 0 different`` (+ runs without reference,
    failed runs)."""
    counts = comparison["verdict"].value_counts().to_dict() if len(comparison) else {}
    matched = counts.get("identical", 0) + counts.get("within tolerance", 0)
    line = (f"reproduced {matched}/{len(comparison)} runs: {counts.get('identical', 0)} identical, "
            f"{counts.get('within tolerance', 0)} within tolerance, {counts.get('different', 0)} different")
    counted = [f"{counts[v]} {v}" for v in ("no reference", "failed") if counts.get(v)]
    extra = [", ".join(counted)] if counted else []
    # The tolerance is for rounding on one kind of machine in one precision; across them runs part early.
    precisions = _differing(comparison, "precision")
    if precisions:
        ours, theirs = (", ".join(sorted({pair[i] for pair in precisions})) for i in (0, 1))
        extra.append(f"{len(precisions)} ran in {ours} against a reference in {theirs}: another precision gives "
                     f"another sample of a run, not its copy; SUPERPOS_AUTO_DTYPE={theirs} reruns in the reference's")
    machines = [pair for pair in _differing(comparison, "device") if all(" kernels" in side for side in pair)]
    if machines:
        extra.append(f"{len(machines)} ran on another machine kind than the reference ({machines[0][0]} against "
                     f"{machines[0][1]}): its rounding gives another sample of a run, not its copy")
    unnamed = [pair for pair in _differing(comparison, "device") if " kernels" in pair[0] and " kernels" not in pair[1]]
    if unnamed:  # references made before records named the CPU's kernels
        extra.append(f"{len(unnamed)} ran on {unnamed[0][0]} against a reference that does not name its CPU kernels "
                     f"({unnamed[0][1]}): the README says which machine kind made it")
    if counts.get("different"):  # then judge the runs as a sample: does their mean agree with the reference's?
        samples = compare_samples(comparison)
        judged = [f"{SAMPLE_TITLES[key]} {row.fresh_mean:.1f} against {row.reference_mean:.1f} (difference "
                  f"{row.mean_difference:+.1f}, {CONFIDENCE:.0%} CI {row.ci_low:+.1f} to {row.ci_high:+.1f}: {row.verdict})"
                  for key, row in samples.iterrows() if key in ("score", "lenient_score") and row.n >= MIN_PAIRED]
        if judged:
            extra.append(f"as a sample of {int(samples['n'].max())} paired runs, means fresh against reference: "
                         f"{', '.join(judged)}")
    return line + (f" ({'; '.join(extra)})" if extra else "")


SAMPLE_TITLES = {"score": "strict", "lenient_score": "lenient", "invalid_rate": "invalid %", "final_loss": "final loss"}


def compare_samples(comparison: pd.DataFrame) -> pd.DataFrame:
    """The fresh runs against their references as two samples of the same settings, for runs that are not
    copies of their references (another precision or machine kind; see the module docstring).

    For each :func:`headline` number, over the n runs that have it on both sides: the two means, the mean of the
    paired differences d_i = fresh_i - reference_i with its Student t confidence interval
    (mean(d) ± t_{n-1} sd(d) / sqrt(n)), the median per-run |d_i|, and, for scale, the median |a - b| over pairs
    of seeds of one setting in the reference (the spread a rerun cannot be expected to beat). Verdict:
    ``consistent`` when the interval holds 0, ``shifted`` when it does not, ``too few runs`` under
    :data:`MIN_PAIRED` pairs. Returns one row per number, indexed by its key."""
    rows = {}
    for key in SAMPLE_TITLES:
        if not {key, f"reference_{key}"} <= set(comparison.columns):
            continue
        both = comparison[[key, f"reference_{key}"]].astype(float).dropna()
        n = len(both)
        differences = both[key] - both[f"reference_{key}"]
        row = {"n": n, "fresh_mean": both[key].mean(), "reference_mean": both[f"reference_{key}"].mean(),
               "mean_difference": differences.mean(), "median_abs_difference": differences.abs().median(),
               "seed_median_abs_difference": _seed_spread(comparison.loc[both.index], f"reference_{key}")}
        if n >= MIN_PAIRED:
            half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * differences.std(ddof=1) / math.sqrt(n)
            row["ci_low"], row["ci_high"] = row["mean_difference"] - half, row["mean_difference"] + half
            row["verdict"] = "consistent" if row["ci_low"] <= 0 <= row["ci_high"] else "shifted"
        else:
            row["ci_low"] = row["ci_high"] = math.nan
            row["verdict"] = "too few runs"
        rows[key] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def sample_spread(comparison: pd.DataFrame) -> str:
    """For a comparison with *different* runs, how far the runs moved against how far two seeds lie apart:
    ``; median |fresh - reference| per run: strict 3.5, lenient 5.3 (between two seeds of one setting in the
    reference: strict 6.0, lenient 7.1)``; empty otherwise."""
    if "verdict" not in comparison.columns or not (comparison["verdict"] == "different").any():
        return ""
    samples = compare_samples(comparison)
    shown = [key for key in ("score", "lenient_score") if key in samples.index and samples.loc[key, "n"]]
    if not shown:
        return ""
    text = "; median |fresh - reference| per run: " + ", ".join(
        f"{SAMPLE_TITLES[key]} {samples.loc[key, 'median_abs_difference']:.1f}" for key in shown)
    seeds = [key for key in shown if not math.isnan(samples.loc[key, "seed_median_abs_difference"])]
    if seeds:
        text += " (between two seeds of one setting in the reference: " + ", ".join(
            f"{SAMPLE_TITLES[key]} {samples.loc[key, 'seed_median_abs_difference']:.1f}" for key in seeds) + ")"
    return text


def _seed_spread(comparison: pd.DataFrame, column: str) -> float:
    """Median |a - b| over the pairs of runs of one setting (seeds) in ``column``; NaN without such pairs."""
    if "setting" not in comparison.columns:
        return math.nan
    gaps = [abs(a - b) for _, group in comparison.groupby("setting") for i, a in enumerate(group[column])
            for b in list(group[column])[i + 1:]]
    return float(pd.Series(gaps).median()) if gaps else math.nan


def _differing(comparison: pd.DataFrame, key: str) -> list[tuple[str, str]]:
    """``(fresh, reference)`` values of column ``key`` in the rows where both are known and differ."""
    if not {key, f"reference_{key}"} <= set(comparison.columns):
        return []
    return [(a, b) for a, b in zip(comparison[key], comparison[f"reference_{key}"])
            if isinstance(a, str) and isinstance(b, str) and a != b]


def rounded(value, digits: int = 2):
    """Numbers for the comparison table: rounded, None kept."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)
