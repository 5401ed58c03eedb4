#!/usr/bin/env python
"""What a full reproduction costs: prompt-tuning step times of the paper's T5 shapes, here, with random weights.

No T5 checkpoint can be downloaded here, so the models are built from ``T5Config`` with the shapes of
``google/t5-v1_1-small`` and ``google/t5-v1_1-base`` (LM-adapted checkpoints share them), written by hand
below. Random weights cost exactly what trained ones cost. One step = prompt (n = 10 vectors) prepended to
the encoder input embeddings, a short target (the GLUE/SuperGLUE label words: ``--target-tokens``), loss,
backward to the prompt only, AdamW on the prompt.

The paper's batch of 32 at 128-256 input tokens takes too long on this CPU, so steps are timed at batch 4
and 8 and extrapolated to batch 32 linearly in the batch (the script prints the measured batch-8/batch-4
time ratio, which is the check on that linearity: 2.0 means time grows in proportion). Then the cost of
the paper's grid follows from the task sizes: ``examples x 80 epochs / (examples/s)``.

Usage: ``python benchmarks/bench_t5_cost.py [--models small,base] [--lengths 128,256] [--steps 3]``;
writes ``results/bench/t5_cost.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
# OpenMP threads that spin while they wait steal the CPU from each other when the cores are shared: measured
# on a 2-core machine with other work running, a training step took 4-35 s with the default (active) wait
# policy and 2.0-2.4 s with the passive one. Every arm runs under the same policy; set OMP_WAIT_POLICY to
# override (it must be set before torch is imported). docs/SPEED.md, "Threads".
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The config.json fields of google/t5-v1_1-{small,base} (and the lm-adapt variants), written by hand.
T5_SHAPES = {
    "small": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8),
    "base": dict(d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
}
T5_COMMON = dict(vocab_size=32128, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
                 layer_norm_epsilon=1e-6, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
EPOCHS = 80          # the paper, §4.4
A100_BF16_PEAK = 312e12  # FLOP/s, dense bf16 tensor cores (NVIDIA's A100 datasheet): a hard lower bound on time
PAPER_BATCH = 32     # common choice; the paper does not state its batch size


def build(shape: str):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    # (transformers 5 always ties T5's LM head to the input embedding, so the parameter count printed is the
    # checkpoint's minus one 32128 x d matrix; the compute, which is what is timed here, is the same.)
    model = T5ForConditionalGeneration(T5Config(**T5_SHAPES[shape], **T5_COMMON))
    model.requires_grad_(False)
    return model


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def time_steps(model, batch: int, length: int, target_tokens: int, steps: int, dropout: bool, n_prompts: int = 10):
    """Median seconds per prompt-tuning step (one warm-up step dropped)."""
    import torch

    model.train(dropout)
    device = model.device
    d = model.config.d_model
    prompt = torch.nn.Parameter(model.get_input_embeddings().weight[100:100 + n_prompts].clone())
    optimizer = torch.optim.AdamW([prompt], lr=0.01, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(2, 32000, (batch, length - n_prompts), generator=generator).to(device)
    labels = torch.randint(2, 32000, (batch, target_tokens), generator=generator)
    labels[:, -1] = 1
    labels = labels.to(device)
    mask = torch.ones(batch, length, dtype=torch.long, device=device)
    times = []
    for _ in range(steps + 1):
        sync(device)
        started = time.perf_counter()
        embeds = torch.cat([prompt.expand(batch, -1, -1), model.get_input_embeddings()(input_ids)], 1)
        loss = model(inputs_embeds=embeds, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - started)
    assert embeds.shape == (batch, length, d)
    return statistics.median(times[1:]), times


def flops_per_example(model, length: int, target_tokens: int, batch: int = 2) -> float:
    """Matmul FLOPs of one training step per example, counted by torch's flop counter (T5's attention is plain
    matmuls, so it counts everything but elementwise work)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    prompt = torch.nn.Parameter(model.get_input_embeddings().weight[100:110].clone())
    input_ids = torch.randint(2, 32000, (batch, length - 10), device=model.device)
    labels = torch.randint(2, 32000, (batch, target_tokens), device=model.device)
    with FlopCounterMode(display=False) as counter:
        embeds = torch.cat([prompt.expand(batch, -1, -1), model.get_input_embeddings()(input_ids)], 1)
        model(inputs_embeds=embeds, labels=labels, use_cache=False).loss.backward()
    return counter.get_total_flops() / batch


def task_sizes() -> dict[str, int]:
    from superpos.tasks.glue import GLUE_SPECS
    from superpos.tasks.superglue import SUPERGLUE_SPECS

    sizes = {name: spec["sizes"][0] for name, spec in GLUE_SPECS.items()}
    sizes.update({name: spec["sizes"][0] for name, spec in SUPERGLUE_SPECS.items()})
    return sizes


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="small,base")
    parser.add_argument("--lengths", default="128,256", help="Encoder lengths, prompt included.")
    parser.add_argument("--batches", default="4,8")
    parser.add_argument("--target-tokens", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per setting (after one warm-up).")
    parser.add_argument("--dropout", action="store_true", help="Also time train mode (dropout 0.1 on).")
    parser.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (fp32 either way).")
    parser.add_argument("--out", default=str(REPO / "results" / "bench"))
    args = parser.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    batches = sorted(int(x) for x in args.batches.split(","))
    sizes = task_sizes()
    examples_per_epoch = sum(sizes.values())
    rows, started = [], time.perf_counter()
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
        f"{torch.get_num_threads()} CPU threads"
    print(f"T5 prompt-tuning cost on {where}, random weights, fp32, "
          f"{args.target_tokens} target tokens, n_prompts 10")
    for shape in [m.strip() for m in args.models.split(",")]:
        model = build(shape).to(args.device)
        params = sum(p.numel() for p in model.parameters())
        for length in lengths:
            for dropout in ([False, True] if args.dropout else [False]):
                measured = {}
                for batch in batches:
                    median, _ = time_steps(model, batch, length, args.target_tokens, args.steps, dropout)
                    measured[batch] = median
                big = batches[-1]
                per_example = measured[big] / big
                t32 = per_example * PAPER_BATCH
                hours = examples_per_epoch * EPOCHS * per_example / 3600
                row = {"model": f"t5-v1_1-{shape}", "params": params, "length": length, "dropout": dropout,
                       "step_s": {str(b): round(t, 3) for b, t in measured.items()},
                       "linearity": round(measured[big] / measured[batches[0]], 2) if len(batches) > 1 else None,
                       "examples_per_s": round(1 / per_example, 2), "step_s_batch32_extrapolated": round(t32, 2),
                       "device_hours_one_run_all_13_tasks_80_epochs": round(hours, 1)}
                flops = flops_per_example(model, length, args.target_tokens)
                run_flops = flops * examples_per_epoch * EPOCHS
                row.update(flops_per_example=flops, flops_one_run=run_flops,
                           a100_hours_lower_bound=round(run_flops / A100_BF16_PEAK / 3600, 1),
                           achieved_flops_cpu=flops / per_example)
                rows.append(row)
                print(f"t5-v1_1-{shape} ({params / 1e6:.0f}M) L={length} dropout={'on' if dropout else 'off'}: "
                      + ", ".join(f"batch {b}: {t:.2f} s/step" for b, t in measured.items())
                      + f" (x{row['linearity']} from batch {batches[0]} to {big}); {row['examples_per_s']} ex/s; "
                      f"batch 32 ~ {t32:.1f} s/step; one method x one seed over the 13 tasks x 80 epochs "
                      f"({examples_per_epoch:,} examples/epoch) ~ {hours:,.0f} hours here; "
                      f"{flops / 1e9:.0f} GFLOP/example (achieved here {flops / per_example / 1e9:.0f} GFLOP/s), "
                      f"{run_flops:.2e} FLOP per run = at least {row['a100_hours_lower_bound']} A100-hours at 100% of "
                      f"the bf16 peak")
        del model
    write_result(Path(args.out) / "t5_cost.json", {"device": where, "task_train_sizes": sizes, "epochs": EPOCHS,
                                                   "rows": rows}, started)
    return 0


def write_result(path: Path, payload: dict, started: float) -> None:
    """Write a benchmark's ``payload`` as JSON to ``path``, stamped with its creation time and wall time since
    ``started`` (a ``time.perf_counter()`` value), and say so."""
    payload = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **payload,
               "wall_s": round(time.perf_counter() - started, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path} in {payload['wall_s']} s")


if __name__ == "__main__":
    sys.exit(main())
