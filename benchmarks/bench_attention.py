#!/usr/bin/env python
"""Attention on a CPU: PyTorch's fused ``scaled_dot_product_attention`` against the fast path's matmul attention.

``superpos.backbones.fast.attention`` computes a Llama layer's attention, on a CPU in bf16, as two batched
matmuls around a float32 softmax (``matmul_attention``) instead of ``F.scaled_dot_product_attention``, whose
CPU kernel is slow in bf16. This script times both, forward and backward (gradients for q, k and v, as prompt
tuning needs them), at SmolLM2-135M's attention shape (9 query heads, 3 key/value heads, head size 64) and the
fast path's two calls per layer: the batch's suffixes attending to the shared prompt and themselves (additive
mask, batch 8, prompt 10, suffix length S) and the prompt attending to itself (causal, 10 positions). Each
setting is timed ``--repeats`` times after 3 warm-up calls (median), both implementations in the same process,
alternating; their ratio is printed. The error columns are each output's largest absolute difference from the
same attention computed in float64.

``--model N`` then checks the choice on the model itself: the engine's simple prompt-tuning loss and prompt
gradient of SmolLM2-135M (seed 0, bbc-topic, batch 8, the first N batches of the run) in bf16 with either
attention, against the same in fp32 with the fused kernel: the loss, the gradient's relative error
``|g - g_fp32| / |g_fp32|`` and its cosine. bf16 rounds both; what matters is that the matmul attention adds
no error of its own.

Usage: ``python benchmarks/bench_attention.py [--dtypes bf16,fp32] [--lengths 64,128,256] [--model 3]``.
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
import torch.nn.functional as F  # noqa: E402

from superpos.backbones.fast import matmul_attention  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64   # SmolLM2-135M
BATCH, PROMPT = 8, 10                 # the quick and cpu profiles' batch; n = 10 prompt vectors
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def fused(q, k, v, mask, causal):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=HEAD_DIM ** -0.5,
                                          enable_gqa=True)


def matmuls(q, k, v, mask, causal):
    return matmul_attention(q, k, v, mask=mask, causal=causal, scale=HEAD_DIM ** -0.5)


def inputs(batch: int, queries: int, keys: int, dtype, causal: bool):
    """q [B, 9, Sq, 64], k and v [B, 3, Sk, 64], the additive mask of the suffix call (None when causal) and a
    gradient for the output, all seeded."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, HEAD_DIM, generator=generator).to(dtype).requires_grad_(True)
               for heads, length in ((HEADS, queries), (KV_HEADS, keys), (KV_HEADS, keys)))
    mask = None
    if not causal:  # suffix query i sees the prompt and suffix keys 0..i
        allowed = torch.ones(queries, keys, dtype=torch.bool).tril(diagonal=keys - queries)
        mask = torch.where(allowed, 0.0, float("-inf")).to(dtype)
    return q, k, v, mask, torch.randn(batch, HEADS, queries, HEAD_DIM, generator=generator).to(dtype)


def time_both(batch, queries, keys, dtype, causal, repeats):
    """Median forward and backward milliseconds of each implementation, and its output's error against float64."""
    q, k, v, mask, grad = inputs(batch, queries, keys, dtype, causal)
    exact = fused(*(t.detach().double() for t in (q, k, v)), None if mask is None else mask.double(), causal)
    result = {}
    for name, fn in (("fused", fused), ("matmuls", matmuls)):
        for _ in range(3):
            fn(q, k, v, mask, causal).backward(grad)
        result[name] = {"forward": [], "backward": []}
    for _ in range(repeats):
        for name, fn in (("fused", fused), ("matmuls", matmuls)):
            started = time.perf_counter()
            out = fn(q, k, v, mask, causal)
            middle = time.perf_counter()
            out.backward(grad)
            result[name]["forward"].append(1e3 * (middle - started))
            result[name]["backward"].append(1e3 * (time.perf_counter() - middle))
            result[name]["error"] = (out.detach().double() - exact).abs().max().item()
    return {name: {"forward": statistics.median(r["forward"]), "backward": statistics.median(r["backward"]),
                   "error": r["error"]} for name, r in result.items()}


def model_check(batches: int) -> None:
    """Loss and prompt gradient of SmolLM2 in bf16 (fused or matmul attention) against fp32 (fused)."""
    import tempfile

    from superpos.backbones import fast
    from superpos.engine import ResultsStore, RunConfig
    from superpos.engine.train import Trainer

    def fused_attention(q, k, v, *, mask=None, causal=False, scale):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale,
                                              enable_gqa=q.shape[1] != k.shape[1])

    chosen = fast.attention
    results = {}
    for dtype in ("fp32", "bf16"):
        config = RunConfig(backbone="smollm2-135m", task="bbc-topic", method="simple", method_config={"n_prompts": PROMPT},
                           batch_size=BATCH, max_steps=batches, eval_every=0, max_input_tokens=256, dtype=dtype,
                           seed=0).resolved()
        with tempfile.TemporaryDirectory() as root:
            trainer = Trainer(config, config.run_hash(), ResultsStore(root), None, progress=False)
            trainable = [p for p in trainer.method.parameters() if p.requires_grad]
            for index in range(batches):
                examples = trainer.batch_at(index)
                batch = trainer.backbone.encode([e.input_text for e in examples], [e.target_text for e in examples],
                                                max_input_tokens=config.max_input_tokens,
                                                max_target_tokens=trainer.max_new_tokens)
                for name, fn in (("fused", fused_attention), ("matmuls", chosen)):
                    if dtype == "fp32" and name == "matmuls":
                        continue  # in fp32 the engine takes the fused kernel
                    fast.attention = fn
                    try:
                        loss = trainer.backbone.loss(batch, trainer.method)
                        grad, = torch.autograd.grad(loss, trainable)
                    finally:
                        fast.attention = chosen
                    results[dtype, name, index] = (loss.item(), grad.float().flatten())
    print(f"SmolLM2-135M, simple prompt tuning (seed 0, bbc-topic, batch {BATCH}): bf16 against fp32 (fused)")
    for index in range(batches):
        loss32, grad32 = results["fp32", "fused", index]
        for name in ("fused", "matmuls"):
            loss, grad = results["bf16", name, index]
            print(f"  batch {index}: bf16 {name:8} loss {loss:.4f} (fp32 {loss32:.4f}), prompt gradient relative error "
                  f"{float((grad - grad32).norm() / grad32.norm()):.4f}, cosine "
                  f"{float(F.cosine_similarity(grad, grad32, dim=0)):.5f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--lengths", default="64,128,256", help="Suffix lengths S (input + target tokens).")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    parser.add_argument("--model", type=int, default=0, metavar="N",
                        help="Also compare SmolLM2's loss and prompt gradient on N batches (0: skip).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"attention, SmolLM2-135M shape ({HEADS} query heads, {KV_HEADS} key/value heads, head size {HEAD_DIM}), "
          f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"kernels {torch.backends.cpu.get_cpu_capability()}; ms, median of {args.repeats}")
    print(f"{'dtype':5} {'call':22} {'fused fwd':>9} {'bwd':>7} {'matmuls fwd':>11} {'bwd':>7} {'fused/matmuls':>13}"
          f" {'error fused':>11} {'matmuls':>8}")
    for dtype_name in args.dtypes.split(","):
        dtype = DTYPES[dtype_name]
        calls = [(f"suffix S={s} (+{PROMPT} keys)", BATCH, s, s + PROMPT, False) for s in map(int, args.lengths.split(","))]
        calls.append((f"prompt causal {PROMPT}", 1, PROMPT, PROMPT, True))
        for label, batch, queries, keys, causal in calls:
            r = time_both(batch, queries, keys, dtype, causal, args.repeats)
            ratio = (r["fused"]["forward"] + r["fused"]["backward"]) / (r["matmuls"]["forward"] + r["matmuls"]["backward"])
            print(f"{dtype_name:5} {label:22} {r['fused']['forward']:9.2f} {r['fused']['backward']:7.2f} "
                  f"{r['matmuls']['forward']:11.2f} {r['matmuls']['backward']:7.2f} {ratio:12.2f}x "
                  f"{r['fused']['error']:11.1e} {r['matmuls']['error']:8.1e}", flush=True)
    if args.model:
        model_check(args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
