"""The GPU benchmarks' own arithmetic, on the CPU: packed throughput, the paper profile's hours, store timelines."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import paper_gpu_hours  # noqa: E402
import store_timeline  # noqa: E402


def test_bench_packing_times_each_group_size(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "bench_packing.py"), "--device", "cpu", "--dtype", "fp32",
               "--shapes", "t5-small", "--packs", "1,2", "--batch-size", "2", "--max-input-tokens", "16",
               "--steps", "1", "--warmup", "1", "--eval-examples", "2", "--count-ops", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads((tmp_path / "bench_packing.json").read_text())["rows"]
    one, two = rows
    assert (one["R"], two["R"]) == (1, 2) and one["shape"] == two["shape"] == "t5-small"
    # T5 v1.1 Small's 77M less its 32128 x 512 head, which transformers 5 ties to the input embedding
    assert one["params"] == 60_511_616
    assert two["rows"] == 2 * one["rows"] == 4
    # Every row carries up to 16 input tokens plus its target; two runs carry about twice one run's tokens.
    assert 2 * 2 <= one["tokens_per_step"] <= 2 * 20 and 1.5 <= two["tokens_per_step"] / one["tokens_per_step"] <= 2.5
    assert two["eval_examples"] == 2 * one["eval_examples"] == 4
    assert "t5-small" in done.stdout.splitlines()[-2] and "wrote" in done.stdout.splitlines()[-1]
    # A second run in the group adds its AdamW step and its own prompt's operators, not a second backbone pass.
    assert 0 < one["views_per_step"] < one["operators_per_step"] < two["operators_per_step"]
    assert two["operators_per_step"] < 1.5 * one["operators_per_step"]
    assert f"{one['operators_per_step']} ops/step" in done.stdout


def test_paper_hours_are_examples_over_rates(tmp_path):
    from superpos.profiles import profile_configs

    runs = paper_gpu_hours.run_costs()
    configs = profile_configs("paper")  # one cost per run of the profile; full fine-tuning runs alone
    assert len(runs) == len(configs) and sum(r["alone"] for r in runs) == sum(c.method == "full" for c in configs) > 0
    mnli = 80 * 392_702  # one prompt run on MNLI: 80 epochs of its documented training rows
    assert any(r["train"] == mnli and not r["alone"] for r in runs)
    # With every rate at 1 example/s, the hours are the examples counted, over 3600.
    rates = {(shape, r): (1.0, 1.0) for shape in ("t5-small", "t5-base") for r in (1, 4)}
    assert paper_gpu_hours.hours(runs, rates, 4) == pytest.approx(sum(r["train"] + r["eval"] for r in runs) / 3600)
    # Twice the packed rate halves the packed runs' share only.
    faster = {**rates, **{(shape, 4): (2.0, 2.0) for shape in ("t5-small", "t5-base")}}
    packed = sum(r["train"] + r["eval"] for r in runs if not r["alone"]) / 3600
    assert paper_gpu_hours.hours(runs, rates, 4) - paper_gpu_hours.hours(runs, faster, 4) == pytest.approx(packed / 2)
    assert paper_gpu_hours.hours(runs, rates, 16) is None  # unmeasured group size
    # The faster precision is taken at each (shape, R) on its own.
    merged = paper_gpu_hours.fastest({"bf16": {("t5-base", 1): (1.0, 5.0), ("t5-base", 4): (8.0, 8.0)},
                                      "fp32": {("t5-base", 1): (3.0, 3.0), ("t5-base", 4): (2.0, 2.0)}})
    assert merged == {("t5-base", 1): (3.0, 3.0), ("t5-base", 4): (8.0, 8.0)}


def test_store_timeline_groups_overlapping_packed_runs(tmp_path, capsys):
    (tmp_path / "records").mkdir()

    def record(name, started, finished, packed, method="superpos"):
        payload = {"status": "done", "steps": 100, "config": {"task": "bbc-topic", "method": method},
                   "provenance": {"started": f"2026-01-01T00:{started}+00:00", "finished": f"2026-01-01T00:{finished}+00:00",
                                  "packed_runs": packed, "device": "cpu"}}
        (tmp_path / "records" / f"{name}.json").write_text(json.dumps(payload))

    record("a", "00:00", "01:40", 2)        # a packed group of two: built one second apart, trained together
    record("b", "00:01", "01:40", 2)
    record("c", "01:41", "02:31", None, method="full")  # alone
    assert store_timeline.main([str(tmp_path), "--total", "6"]) == 0
    out = capsys.readouterr().out
    assert "3 runs" in out and "2 run(s) packed (group of 2)" in out and "1 run(s) alone" in out
    assert "  100 s" in out and "   50 s" in out
    assert "span 151 s" in out and "alone: 1 runs, 50 s; packed: 2 runs, 100 s" in out
    assert "~ 5 min" in out  # 6 runs at 151/3 s each


def test_bench_attention_times_the_three_ways_and_checks_them_against_float64():
    command = [sys.executable, str(REPO / "benchmarks" / "bench_attention.py"), "--lengths", "8,16", "--repeats", "1",
               "--threads", "1"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert "bf16 kernel" in lines[1] and "fp32 kernel" in lines[1] and "bf16 matmuls" in lines[1]
    rows = [line for line in lines if line.startswith(("suffix S=", "prompt causal"))]
    assert len(rows) == 3
    for row in rows:  # a 24-character label, then milliseconds and error of each way, then the ratio
        *numbers, ratio = row[24:].split()
        times, errors = [float(x) for x in numbers[0::2]], [float(x) for x in numbers[1::2]]
        assert len(times) == 3 and all(t > 0 for t in times) and all(e < 0.05 for e in errors), row
        assert float(ratio.rstrip("x")) == pytest.approx(times[0] / times[1], rel=0.1, abs=0.1), row
