"""Does bf16 learn like fp32? The same run trained in both precisions, printed side by side.

Trains one configuration (default: SuperPos-Prompt on bbc-topic with the embedded SmolLM2-135M, the quick
profile's budget shortened to 24 steps) twice through the engine, ``dtype="fp32"`` and ``dtype="bf16"``,
into a scratch store under ``results/bench/precision`` (not committed), then prints the loss at every step of
both, the largest difference, the evaluation points (strict score, lenient score, invalid rate) and the
seconds per step of each with their ratio. Whether bf16 is *native* on this machine (and so worth using) is
printed too: ``dtype="auto"`` picks it only then.

    python benchmarks/bench_precision.py                    # ~2 min in fp32 + the bf16 run
    python benchmarks/bench_precision.py --backbone tiny-llama --max-steps 4
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(variable, "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--task", default="bbc-topic")
    parser.add_argument("--method", default="superpos")
    parser.add_argument("--max-steps", type=int, default=24)
    parser.add_argument("--eval-every", type=int, default=12)
    parser.add_argument("--eval-limit", type=int, default=64)
    parser.add_argument("--out", default=str(REPO / "results" / "bench" / "precision"))
    args = parser.parse_args(argv)

    import torch

    from superpos.backbones.precision import native_bf16
    from superpos.engine import ResultsStore, RunConfig, run

    store_root = Path(args.out)
    shutil.rmtree(store_root, ignore_errors=True)  # both runs train now, in this call
    store = ResultsStore(store_root)
    common = dict(backbone=args.backbone, task=args.task, method=args.method, max_steps=args.max_steps,
                  eval_every=args.eval_every, batch_size=8, train_limit=8 * args.max_steps, eval_limit=args.eval_limit,
                  eval_batch_size=args.eval_limit, max_input_tokens=64, seed=0)
    native, why = native_bf16(torch.device("cpu"))
    print(f"precision: {args.method} on {args.task}, {args.backbone}, {args.max_steps} steps at batch 8, seed 0, "
          f"{torch.get_num_threads()} threads; bf16 native here: {'yes' if native else 'no'} ({why})", flush=True)
    records = {}
    for dtype in ("fp32", "bf16"):
        records[dtype] = run(RunConfig(dtype=dtype, **common), store, progress=False)
        timing = records[dtype]["timing"]
        print(f"  {dtype}: {timing['train_seconds']:.1f} s training ({1 / timing['steps_per_s']:.2f} s/step), "
              f"{timing['eval_seconds']:.1f} s evaluation", flush=True)

    fp32, bf16 = (dict((int(s), loss) for s, loss in records[d]["loss_curve"]) for d in ("fp32", "bf16"))
    print("\nstep  loss fp32  loss bf16  difference")
    for step in sorted(fp32):
        print(f"{step:>4}  {fp32[step]:9.4f}  {bf16[step]:9.4f}  {bf16[step] - fp32[step]:+10.4f}")
    gaps = [abs(bf16[s] - fp32[s]) for s in fp32]
    print(f"largest |difference|: {max(gaps):.4f}; mean |difference|: {sum(gaps) / len(gaps):.4f}")
    print("\nevaluation   strict fp32 / bf16   lenient fp32 / bf16   invalid % fp32 / bf16")
    for a, b in zip(records["fp32"]["history"], records["bf16"]["history"]):
        print(f"step {a['step']:>4}   {a['score']:6.1f} / {b['score']:6.1f}      {a['lenient_score']:6.1f} / "
              f"{b['lenient_score']:6.1f}       {100 * a['invalid_rate']:5.1f} / {100 * b['invalid_rate']:5.1f}")
    ratio = records["bf16"]["timing"]["steps_per_s"] / records["fp32"]["timing"]["steps_per_s"]
    print(f"\nbf16 steps/s / fp32 steps/s: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
