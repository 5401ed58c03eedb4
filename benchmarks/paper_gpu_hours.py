#!/usr/bin/env python
"""GPU-hours of the ``paper`` profile, from throughputs measured by ``bench_packing.py`` on one GPU.

Every run of ``profile_configs("paper")`` (all notebooks, each run once) costs

    epochs x train rows / (training examples/s of its backbone at group size R)
  + epochs x validation rows / (evaluation examples/s at R)

with the task's documented split sizes (``superpos.tasks``: the ``paper`` protocol trains on train and evaluates on
validation every epoch). Assumptions, each a stated approximation:

- an example of every task costs what an example of the measurement costs (bbc-topic: about 50 tokens on average,
  each batch padded to its longest); the sentence and sentence-pair inputs of QQP, MNLI, QNLI and SST-2, 93 % of the
  training examples, are of that order, a few dozen words. MultiRC and BoolQ, whose passages are longer (cap 512),
  are charged twice;
- every prompt method costs what SuperPos costs (the method's own work is a few small matrix products);
- full fine-tuning runs alone (R = 1) and costs 1.5x a prompt-tuning step (weight gradients: 6 instead of 4 FLOPs
  per parameter and token), plus its optimizer step;
- the original T5-Base of Table 3 has T5 v1.1 Base's cost (it is slightly smaller: 220M against 248M).

Usage: ``python benchmarks/paper_gpu_hours.py results/bench/bench_packing.json [more.json ...]``; prints one line
per (precision, R) measured for both T5 shapes.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PAPER_A100_HOURS = 1000  # the paper's own statement of its compute
FULL_FT_FACTOR = 1.5     # weight gradients: 6 instead of 4 FLOPs per parameter and token
LONG_TASK_FACTOR = 2.0   # MultiRC and BoolQ inputs are cut at 512 instead of 256


def shape_of(backbone: str) -> str:
    return "t5-small" if "small" in backbone else "t5-base"


def run_costs() -> list[dict]:
    """One entry per run of the paper profile: shape, whether it packs, examples trained and evaluated, factor."""
    from superpos.profiles import profile_configs
    from superpos.tasks import get_task

    runs = []
    for config in profile_configs("paper"):
        train_rows, validation_rows = get_task(config.task).sizes  # the documented (train, validation) sizes
        factor = LONG_TASK_FACTOR if config.max_input_tokens > 256 else 1.0
        runs.append({"shape": shape_of(config.backbone), "alone": config.method == "full",
                     "train": config.epochs * train_rows * factor * (FULL_FT_FACTOR if config.method == "full" else 1),
                     "eval": config.epochs * validation_rows * factor})
    return runs


def hours(runs: list[dict], rates: dict, pack: int) -> float | None:
    """Total hours with prompt runs at group size ``pack`` and full fine-tuning at R = 1; None if unmeasured."""
    seconds = 0.0
    for run in runs:
        r = 1 if run["alone"] else pack
        if (run["shape"], r) not in rates:
            return None
        train_rate, eval_rate = rates[(run["shape"], r)]
        seconds += run["train"] / train_rate + run["eval"] / eval_rate
    return seconds / 3600


def fastest(rates: dict[str, dict]) -> dict:
    """One rate table from several precisions' ``{(shape, R): (train, eval)}``: at each (shape, R), the precision
    that trains fastest there (bf16 wins on a busy GPU, fp32 where a step is host-bound)."""
    merged: dict = {}
    for measured in rates.values():
        for key, rate in measured.items():
            if key not in merged or rate[0] > merged[key][0]:
                merged[key] = rate
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("measurements", nargs="+", help="bench_packing.json files (one device).")
    args = parser.parse_args(argv)
    rates: dict[str, dict] = defaultdict(dict)
    devices = set()
    for path in args.measurements:
        payload = json.loads(Path(path).read_text())
        devices.add(payload["device"])
        for row in payload["rows"]:
            if "examples_per_s" in row:
                rates[payload["precision"]][(row["shape"], row["R"])] = (row["examples_per_s"],
                                                                         row["eval_examples_per_s"])
    runs = run_costs()
    trained = sum(r["train"] for r in runs)
    print(f"paper profile: {len(runs)} runs ({sum(r['alone'] for r in runs)} full fine-tuning, alone), "
          f"{trained / 1e9:.2f}G training examples (weighted), on {', '.join(sorted(devices))}")
    for precision, measured in sorted(rates.items()):
        for pack in sorted({r for _, r in measured}):
            total = hours(runs, measured, pack)
            if total is not None:
                print(f"  {precision}, prompt runs packed R={pack:<3}: {total:7.1f} GPU-hours "
                      f"({total / PAPER_A100_HOURS:.1%} of the paper's ~{PAPER_A100_HOURS} A100-hours)")
    if len(rates) > 1:
        merged = fastest(rates)
        for pack in sorted({r for _, r in merged}):
            total = hours(runs, merged, pack)
            if total is not None:
                print(f"  the faster precision at each shape and R, prompt runs packed R={pack:<3}: {total:7.1f} "
                      f"GPU-hours ({total / PAPER_A100_HOURS:.1%} of the paper's ~{PAPER_A100_HOURS} A100-hours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
