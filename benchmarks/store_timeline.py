#!/usr/bin/env python
"""Where a profile's time went, read from its records alone: one line per packed group or run trained alone.

Each record carries its provenance (``started``, ``finished``, ``packed_runs``, device). Printed: each unit's
start (seconds after the first record's start), wall time, runs and their methods, steps and time per step; then
the span, the time of runs trained alone (full fine-tuning) and of packed ones, and, when ``--total N`` names how
many runs the profile has, a projection of the whole profile's wall time at the pace of the records seen.

Usage: ``python benchmarks/store_timeline.py results/offline [--total 366]``.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path


def load_records(store: Path) -> list[dict]:
    records = [json.loads(path.read_text()) for path in sorted((store / "records").glob("*.json"))]
    return [r for r in records if r.get("status") == "done" and r.get("provenance", {}).get("started")]


def groups(records: list[dict]) -> list[list[dict]]:
    """Records grouped into the units that trained together, in start order: a packed group's runs start one by
    one as their trainers are built and train side by side, so records whose time spans overlap are one unit."""
    when = datetime.fromisoformat
    units: list[list[dict]] = []
    end = None
    for record in sorted(records, key=lambda r: r["provenance"]["started"]):
        start, finish = when(record["provenance"]["started"]), when(record["provenance"]["finished"])
        if units and end is not None and start < end and record["provenance"].get("packed_runs"):
            units[-1].append(record)
            end = max(end, finish)
        else:
            units.append([record])
            end = finish
    return units


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="A store folder (holding records/).")
    parser.add_argument("--total", type=int, help="Runs in the whole profile, for a projection.")
    args = parser.parse_args(argv)
    records = load_records(Path(args.store))
    if not records:
        print(f"{args.store}: no finished records", file=sys.stderr)
        return 2
    when = datetime.fromisoformat
    first = min(when(r["provenance"]["started"]) for r in records)
    last = max(when(r["provenance"]["finished"]) for r in records)
    devices = Counter(r["provenance"].get("device", "?") for r in records)
    print(f"{len(records)} runs in {args.store} on {', '.join(devices)}")
    spent = {"alone": [0.0, 0], "packed": [0.0, 0]}
    for members in groups(records):
        start = when(members[0]["provenance"]["started"])
        wall = (max(when(r["provenance"]["finished"]) for r in members) - start).total_seconds()
        packed = members[0]["provenance"].get("packed_runs")
        steps = max(r["steps"] for r in members)
        methods = ", ".join(f"{m} {n}" for m, n in Counter(r["config"]["method"] for r in members).most_common())
        kind = "packed" if packed else "alone"
        spent[kind][0] += wall
        spent[kind][1] += len(members)
        print(f"  +{(start - first).total_seconds():6.0f} s  {wall:5.0f} s  {len(members):2d} run(s) "
              f"{'packed (group of ' + str(packed) + ')' if packed else 'alone':20s} {steps} steps "
              f"{wall / steps * 1000:6.0f} ms/step  {members[0]['config']['task']}: {methods}")
    span = (last - first).total_seconds()
    print(f"span {span:.0f} s ({span / 60:.1f} min); alone: {spent['alone'][1]} runs, {spent['alone'][0]:.0f} s; "
          f"packed: {spent['packed'][1]} runs, {spent['packed'][0]:.0f} s")
    if args.total:
        pace = span / len(records)
        print(f"projection: {args.total} runs at {pace:.1f} s/run (this store's pace) ~ {args.total * pace / 60:.0f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
