"""``benchmarks/bench_training.py`` on tiny-llama: every arm at the one precision asked for, both matmul peaks."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_runs_every_arm_at_one_precision_and_reports_both_peaks(tmp_path):
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    command = [sys.executable, str(REPO / "benchmarks" / "bench_training.py"), "--backbone", "tiny-llama",
               "--steps", "1", "--batch-size", "2", "--arms", "ours-simple,peft-trainer,ours-simple-eager",
               "--dtype", "bf16",
               "--train-limit", "16", "--eval-limit", "4", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert re.search(r"^speedup vs peft\+trainer: \d+\.\d\dx$", out.strip().splitlines()[-1])
    assert "precision: bf16 for every arm (asked for explicitly)" in out
    assert "%fp32pk" in out and "%bf16pk" in out
    assert re.search(r"^  fp32: [\d.]+ GFLOP/s .*\d+\^3 torch\.mm", out, re.M)
    assert re.search(r"^  bf16: [\d.]+ GFLOP/s .*\d+\^3 torch\.mm", out, re.M)
    assert "ours against peft-trainer and the matmul peaks, measured in this run (every arm bf16):" in out
    assert re.search(r"^  ours-simple: examples/s \d+\.\d\dx peft-trainer's, both bf16$", out, re.M)
    assert re.search(r"^  ours-simple: metrics against peft-trainer's: strict score [\d.]+ vs [\d.]+, lenient score "
                     r"[\d.]+ vs [\d.]+, validation loss [\d.]+ vs [\d.]+; (worse on: .+|equal or better on all three)$",
                     out, re.M)
    assert re.search(r"^  ours-simple: \d+% of the bf16 peak \([\d.]+ of [\d.]+ GFLOP/s\), computing in bf16", out, re.M)
    assert "goal" not in out  # the printout states what was measured, nothing judged against a target

    payload = json.loads((tmp_path / "bench_training.json").read_text())
    assert payload["precision"] == "bf16"
    for arm in ("ours-simple", "peft-trainer"):
        result = payload["arms"][arm]
        assert result["precision"]["backbone_dtype"] == "bf16", arm
        assert result["precision"]["trainable_dtypes"] == ["fp32"], arm
        peaks = result["matmul_peak_flops"]
        assert len(peaks["fp32"]) == len(peaks["bf16"]) == 2 and min(peaks["fp32"] + peaks["bf16"]) > 0, arm
    # bf16 on a CPU: ours-simple compiles its decoder layers, the eager arm does not; one line compares them
    assert payload["arms"]["ours-simple"]["precision"]["decoder_layers"] == "compiled"
    assert payload["arms"]["ours-simple-eager"]["precision"]["decoder_layers"] == "eager"
    assert re.search(r"^ours-simple / ours-simple-eager: examples/s \d+\.\d\dx \(decoder layers compiled against "
                     r"eager, steps alternating\)$", out, re.M)
    peft = payload["arms"]["peft-trainer"]["precision"]
    assert peft["training_args_bf16"] is True and peft["accelerate_mixed_precision"] == "bf16"
    assert {m["quantity"] for m in payload["measured"]} == {"examples_per_s_ratio", "metrics_against_peft_trainer",
                                                            "bf16_peak_fraction", "fp32_peak_fraction"}


def test_bench_generation_times_both_first_steps_and_compares_with_fp32():
    command = [sys.executable, str(REPO / "benchmarks" / "bench_generation.py"), "--backbone", "tiny-llama",
               "--examples", "6", "--batch-size", "4", "--repeats", "2"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    for way in ("fast first step", "hugging face"):
        assert re.search(rf"^  {way} +[\d.]+ s +[\d.]+ examples/s  answers equal to fp32's: \d/6$", done.stdout, re.M)
    assert re.search(r"^fast first step / hugging face: examples/s \d+\.\d\dx \(alternating rounds\)$", lines[-1])
