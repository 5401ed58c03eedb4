#!/usr/bin/env python
"""Greedy generation in bf16 on a CPU: the fast path's first step against Hugging Face's, timed and compared.

Evaluation generates each answer greedily (``Backbone.generate``). Its first step runs the whole
``[prompt, input]`` batch through the model; in bf16 on a CPU that step is compute-bound, and Hugging Face's
forward spends much of it on padding and on the prompt repeated in every row. The engine computes it with the
fast path instead (``superpos.backbones.fast.causal_prefill``: real tokens only, a shared prompt once, the last
layer only at each row's last token) and hands its keys and values to Hugging Face's KV cache for the later steps.

Timed: one evaluation batch of a task's validation examples (as ``evaluate`` forms it: ordered by input length,
``--batch-size`` rows), generated to the task's answer length, the two ways taking turns (``--repeats`` rounds,
median), with the simple prompt of ``--method`` built at seed 0 (untrained: timing does not depend on it). Also
printed: how many greedy answers each way shares with the same model in fp32 (an untrained prompt leaves many
near-ties, so both fall short of all; what matters is that the fast way is no further from fp32 than Hugging
Face's bf16 forward).

Usage: ``python benchmarks/bench_generation.py [--backbone smollm2-135m] [--examples 64] [--batch-size 64]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from superpos.backbones import fast, load_backbone  # noqa: E402
from superpos.engine.evaluate import chunks, max_new_tokens_for  # noqa: E402
from superpos.methods import build_method  # noqa: E402
from superpos.tasks import get_task  # noqa: E402

WAYS = ("fast first step", "hugging face")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--task", default="bbc-topic")
    parser.add_argument("--method", default="simple", help="Prompt method (built untrained, seed 0).")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"),
                        help="The fast first step is taken in bf16 and fp16 on a CPU only.")
    parser.add_argument("--examples", type=int, default=64, help="Validation examples generated.")
    parser.add_argument("--batch-size", type=int, default=64, help="Rows per generation batch (eval_batch_size).")
    parser.add_argument("--max-input-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    task = get_task(args.task)
    examples = task.examples("validation")[:args.examples]
    backbones = {dtype: load_backbone(args.backbone, dtype=dtype) for dtype in (args.dtype, "fp32")}
    backbone = backbones[args.dtype]
    if not (fast.prefills(backbone.dtype, backbone.device) and fast.supported(backbone.model)):
        print(f"{args.backbone} in {args.dtype} on {backbone.device.type}: the fast first step does not apply "
              "(a Llama backbone in bf16 or fp16 on a CPU only)")
        return 1
    methods = {dtype: build_method({"method": args.method}, b, seed=0) for dtype, b in backbones.items()}
    new_tokens = max_new_tokens_for(backbone, task)
    batches = [backbone.encode([examples[i].input_text for i in chunk], None, max_input_tokens=args.max_input_tokens,
                               max_target_tokens=new_tokens) for chunk in chunks(examples, args.batch_size)]

    def generate(dtype: str, fast_first: bool) -> list[list[int]]:
        bb = backbones[dtype]
        bb.fast_prefill = fast_first
        try:
            return [ids for batch in batches for ids in bb.generate_ids(batch, methods[dtype], new_tokens)]
        finally:
            bb.fast_prefill = True

    answers = {way: generate(args.dtype, way == WAYS[0]) for way in WAYS}  # also the warm-up
    reference = generate("fp32", False)
    seconds = {way: [] for way in WAYS}
    for round_index in range(args.repeats):
        for way in WAYS if round_index % 2 == 0 else WAYS[::-1]:
            started = time.perf_counter()
            generate(args.dtype, way == WAYS[0])
            seconds[way].append(time.perf_counter() - started)

    tokens = sum(int(batch.attention_mask.sum()) for batch in batches)
    print(f"greedy generation, {args.backbone} in {args.dtype}, CPU, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}: {len(examples)} {args.task} validation examples ({tokens} input tokens) in "
          f"batches of {args.batch_size}, {new_tokens} new tokens at most, {args.method} prompt (untrained, seed 0); "
          f"median of {args.repeats} alternating rounds")
    for way in WAYS:
        median = statistics.median(seconds[way])
        same = sum(a == b for a, b in zip(answers[way], reference))
        print(f"  {way:16} {median:7.2f} s  {len(examples) / median:7.1f} examples/s  "
              f"answers equal to fp32's: {same}/{len(examples)}")
    ratio = statistics.median(seconds[WAYS[1]]) / statistics.median(seconds[WAYS[0]])
    print(f"fast first step / hugging face: examples/s {ratio:.2f}x (alternating rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
