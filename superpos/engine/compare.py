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
run only on the machine kind and precision of its reference; elsewhere the comparison says how far the sample
moved, and the summary line names a precision or a machine kind (records name their CPU kernels) that
differs.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

#: Largest difference still called a reproduction. Scores are in points (0-100): 3 points is 2-4 examples of
#: a 64-100-example evaluation, well under the spread between seeds of one setting (the README's "Results at a
#: glance" gives the measured spread). The final training loss may move by 5 % of its value.
TOLERANCE = {"score": 3.0, "lenient_score": 3.0, "invalid_rate": 3.0, "final_loss": 0.05}
VERDICTS = ("identical", "within tolerance", "different", "no reference", "failed")


def headline(record: dict) -> dict:
    """The numbers a reproduction is judged on: the best point's strict score, the best lenient score over
    the evaluation points, the invalid-label rate (%) at the best point, and the last training loss."""
    best = (record.get("best") or {}).get("test") or {}
    history = record.get("history") or []
    lenient = [p.get("lenient_score") for p in history if p.get("lenient_score") is not None]
    curve = record.get("loss_curve") or []
    invalid = best.get("invalid_rate")
    return {"score": best.get("score"), "lenient_score": max(lenient) if lenient else None,
            "invalid_rate": None if invalid is None else 100 * invalid,
            "final_loss": curve[-1][1] if curve else None}


def _identical(fresh: dict, reference: dict) -> bool:
    return all(fresh.get(key) == reference.get(key) for key in ("history", "loss_curve", "best", "steps"))


def _label(config: dict) -> str:
    extra = "".join(f" {k}={v}" for k, v in sorted((config.get("method_config") or {}).items())
                    if k in ("m", "n_prompts", "softmax", "init", "fusion", "projection"))
    return f"{config['task']}/{config['method']}{extra} dropout={'on' if config['dropout'] else 'off'} seed={config['seed']}"


def compare_record(fresh: dict, reference: dict | None) -> dict:
    """One row: the run, its verdict, and fresh/reference/difference of each :func:`headline` number."""
    row = {"hash": fresh["hash"], "run": _label(fresh["config"])}
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
    if precisions or machines:  # then the runs are samples: their means are what can agree
        means = []
        for key, title in (("score", "strict"), ("lenient_score", "lenient")):
            if {key, f"reference_{key}"} <= set(comparison.columns):
                both = comparison[[key, f"reference_{key}"]].astype(float).dropna()  # runs with a reference
                if len(both):
                    means.append(f"{title} {both[key].mean():.1f} against {both[f'reference_{key}'].mean():.1f}")
        if means:
            extra.append(f"means over the runs, fresh against reference: {', '.join(means)}")
    return line + (f" ({'; '.join(extra)})" if extra else "")


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
