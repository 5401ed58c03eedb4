#!/usr/bin/env python
"""Training speed: this package's engine against Hugging Face PEFT prompt tuning + transformers' Trainer.

One call (``make bench``) runs, on the same frozen backbone, the same task data in the same order, the same
batch size, prompt length and prompt initialization:

- ``ours-simple`` and ``ours-superpos``: the engine's own training step (``superpos.engine.train.Trainer.
  train_step``: ``backbone.encode`` + ``backbone.loss`` + AdamW on the method's parameters; ``engine_arm.py``);
- ``peft-trainer``: ``peft.PromptTuningConfig`` (n = 10 virtual tokens, initialized with the very prompt the
  ``simple`` arm starts from) trained by ``transformers.Trainer``, the data prepared as PEFT's causal-LM
  prompt-tuning guide does it (``peft_arm.py``);
- ``ours-simple-hf`` (the plain Hugging Face forward) and ``ours-simple-eager`` (eager decoder layers, a default
  arm only where ours-simple compiles them: bf16 on a CPU): what the fast loss and the compiled layers add.

Every arm computes at one precision, resolved once per run: ``--dtype auto`` (the default) asks
``superpos.backbones.precision.resolve_precision``, which gives bf16 where the device runs it natively (CUDA
with bf16, a CPU with avx512_bf16 or AMX) and fp32 elsewhere; ``--dtype fp32|bf16`` overrides. Trainable
prompts stay float32 in every arm.

Each arm lives in its own Python process (so its peak memory is its own), and the arms take turns step by
step, the order rotating, so that a change of load on a shared machine hits every arm alike. Each process
also times matmul microbenchmarks in float32 *and* bfloat16 (``torch.mm`` of 2048 x 2048, median of 10
after 2 warm-up calls) before and after its steps: the hardware references for the achieved FLOP/s, both
reported whatever the run's precision. Where one 2048^3 call is predicted to take over 1 s (bf16 emulated
by a CPU without bf16 units: ~1 GFLOP/s), that type's size is halved until it fits (not below 256), with 5
timed calls after 1 warm-up; the first process decides the sizes and all use them, and the printout names them
(``common.py``). Steps are timed wall-clock, the optimizer step and the step's data preparation included; the
warm-up step is dropped and medians are reported. After the same number of steps, every arm is scored the same
way: greedy generation through the engine's evaluation path, scored by the task's scorer. FLOPs per step are
counted analytically as each arm computes them (``common.py``; docs/SPEED.md, section 1). With ``--pack R``
(default 4), R runs are then timed alone and packed, in turn, in one more process.

The printout (``training_report.py``) ends with ``speedup vs peft+trainer: X.XXx`` (examples/s of ours-simple
over peft-trainer). Results go to ``results/bench/bench_training.json`` (overwritten by every run).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
# OpenMP threads that spin while they wait steal the CPU from each other when the cores are shared: measured
# on a 2-core machine with other work running, a training step took 4-35 s with the default (active) wait
# policy and 2.0-2.4 s with the passive one. Every arm runs under the same policy; set OMP_WAIT_POLICY to
# override (it must be set before torch is imported). docs/SPEED.md, "Threads".
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import PEAK_DTYPES, TORCH_DTYPES, matmul_peaks  # noqa: E402
from engine_arm import EngineArm, PackingArm  # noqa: E402
from peft_arm import PeftArm  # noqa: E402
from training_report import report  # noqa: E402

ARMS = ("ours-simple", "peft-trainer", "ours-superpos", "ours-simple-hf", "ours-simple-eager")


# ----------------------------------------------------------------------------- one arm's process
def arm_worker(arm: str, arg_values: dict, conn) -> None:
    """One arm in its own process: build it, then obey the orchestrator (("peak", plans), start, step, finish)."""
    import traceback

    try:
        import torch

        args = argparse.Namespace(**arg_values)
        torch.manual_seed(args.seed)
        store_root = tempfile.mkdtemp(prefix="bench-store-")
        runner = (PeftArm(args, store_root) if arm == "peft-trainer" else PackingArm(args, store_root)
                  if arm == "packing" else EngineArm(args, arm, store_root))
        runner.conn = conn
        conn.send(("ok", {"threads": torch.get_num_threads(), "device": str(runner.device)}))
        while True:
            command = conn.recv()
            if isinstance(command, tuple) and command[0] == "peak":  # ("peak", plans or None)
                conn.send(("ok", matmul_peaks(runner.device, command[1])))
            elif command == "start":
                runner.start()
                conn.send(("ok", None))
            elif command == "step":
                elapsed = runner.step()
                if elapsed is not None:  # (the PEFT arm answers from inside Trainer.train())
                    conn.send(("ok", elapsed))
            elif command == "finish":
                conn.send(("ok", runner.finish()))
                return
    except BaseException:  # noqa: BLE001 - reported to the orchestrator
        conn.send(("error", traceback.format_exc()))


# ----------------------------------------------------------------------------- orchestration
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--task", default="bbc-topic")
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per arm (after the warm-up).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed warm-up steps (they still train).")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-prompts", type=int, default=10)
    parser.add_argument("--max-input-tokens", type=int, default=256)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--eval-limit", type=int, default=60, help="Validation examples scored per arm.")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu' or 'cuda'.")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp32", "bf16"),
                        help="Precision of every arm's frozen backbone: 'auto' (resolve_precision: bf16 where the "
                             "device runs it natively, else fp32), 'fp32' or 'bf16'.")
    parser.add_argument("--arms", default=None,
                        help=f"Comma-separated subset of {', '.join(ARMS)} (default: all; ours-simple-eager only where "
                             "the fast loss compiles its layers).")
    parser.add_argument("--pack", type=int, default=4,
                        help="Also time R runs packed against the same R runs alone, in one process (0: skip).")
    parser.add_argument("--out", default="results/bench", help="Folder for the JSON results (relative: to the repository).")
    return parser.parse_args(argv)


def arms_device(device: str):
    """The ``torch.device`` the arms will use: ``auto`` is CUDA when present, else the CPU."""
    import torch

    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)


def compiles_layers(precision: str, device: str) -> bool:
    """Whether the engine's fast loss compiles its decoder layers at this precision on this device."""
    import torch

    from superpos.backbones import fast

    return fast.compiles(getattr(torch, TORCH_DTYPES.get(precision, "float32")), arms_device(device))


def run_precision(requested: str, device: str) -> tuple[str, str]:
    """``(dtype, reason)`` for every arm of this run (``resolve_precision`` on the device the arms will use)."""
    from superpos.backbones.precision import resolve_precision

    return resolve_precision(requested, arms_device(device))


def bf16_native(device: str) -> tuple[bool, str]:
    """``native_bf16`` on the device the arms will use: whether a bf16 run computes natively or emulated."""
    from superpos.backbones.precision import native_bf16

    return native_bf16(arms_device(device))


class ArmProcess:
    """The orchestrator's handle on one arm's process."""

    def __init__(self, name: str, args, context):
        self.name = name
        self.conn, child = context.Pipe()
        self.process = context.Process(target=arm_worker, args=(name, vars(args), child), daemon=True)
        self.process.start()
        self.info = self.receive()
        self.peaks: list[float] = []

    def receive(self):
        if not self.conn.poll(1800):
            raise SystemExit(f"bench: arm {self.name} did not answer within 30 minutes")
        status, value = self.conn.recv()
        if status != "ok":
            raise SystemExit(f"bench: arm {self.name} failed:\n{value}")
        return value

    def call(self, command: str):
        self.conn.send(command)
        return self.receive()


def main(argv=None) -> int:
    import multiprocessing

    args = parse_args(argv)
    arms = [a.strip() for a in (args.arms or ",".join(ARMS)).split(",") if a.strip()]
    for arm in arms:
        if arm not in ARMS:
            raise SystemExit(f"bench: unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    started = time.perf_counter()
    args.precision, args.precision_reason = run_precision(args.dtype, args.device)
    if args.arms is None and not compiles_layers(args.precision, args.device):
        arms.remove("ours-simple-eager")
    args.bf16_native, args.bf16_native_why = bf16_native(args.device)
    print(f"[bench] precision {args.precision} ({args.precision_reason})", file=sys.stderr, flush=True)
    context = multiprocessing.get_context("spawn")
    handles = {}
    for name in arms:  # one after another: the first one may have to convert the backbone into the cache
        print(f"[bench] loading {name} ...", file=sys.stderr, flush=True)
        handles[name] = ArmProcess(name, args, context)
    total = args.steps + args.warmup
    plans = None  # the first process sizes the microbenchmarks, every process then uses those sizes
    for handle in handles.values():
        handle.peaks.append(handle.call(("peak", plans)))
        plans = plans or {d: {k: p[k] for k in ("size", "repeats", "warmup", "predicted_s_per_2048_call")}
                          for d, p in handle.peaks[0].items()}
        handle.call("start")
    for step in range(total):  # interleaved, the order rotating, so load drift hits every arm alike
        order = arms[step % len(arms):] + arms[:step % len(arms)]
        times = {name: handles[name].call("step") for name in order}
        print(f"[bench] step {step + 1}/{total}: " + ", ".join(f"{n} {t:.2f}s" for n, t in times.items()),
              file=sys.stderr, flush=True)
    for handle in handles.values():
        handle.peaks.append(handle.call(("peak", plans)))
    results = {}
    for name, handle in handles.items():
        print(f"[bench] evaluating {name} ...", file=sys.stderr, flush=True)
        results[name] = {**handle.call("finish"), "matmul_peaks": handle.peaks,
                         "matmul_peak_flops": {d: [p[d]["flops"] for p in handle.peaks] for d in PEAK_DTYPES},
                         **handle.info}
        handle.process.join(timeout=60)
    packing = None
    if args.pack >= 2:  # after the arms, in its own process: R runs alone and packed, alternating
        print(f"[bench] packing: {args.pack} runs alone and packed ...", file=sys.stderr, flush=True)
        handle = ArmProcess("packing", args, context)
        handle.call("start")
        for step in range(total):
            handle.call("step")
        packing = handle.call("finish")
        handle.process.join(timeout=60)
    return report(args, arms, results, started, packing)


if __name__ == "__main__":
    sys.exit(main())
