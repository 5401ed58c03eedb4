#!/usr/bin/env python
"""Attention in bf16 on a CPU: three ways to compute it, timed and checked against float64.

The engine's fast path (``superpos.backbones.fast.attention``) computes a Llama layer's attention, in bf16 on a
CPU, by PyTorch's fused ``scaled_dot_product_attention`` on the inputs widened to float32 (``fp32 kernel``),
not by the same kernel in bf16 (``bf16 kernel``), whose CPU backward is slow. A third way, two bf16 batched
matmuls around a float32 softmax (``bf16 matmuls``, as Hugging Face's eager attention computes it), is faster
still but rounds the scores and the weights to bf16; on the quick profile it learned measurably worse
(docs/SPEED.md section 1), so the engine does not use it.

Timed: forward and backward (gradients for q, k and v, as prompt tuning needs them) at SmolLM2-135M's attention
shape (9 query heads, 3 key/value heads, head size 64) and the fast path's two calls per layer: the batch's
suffixes attending to the shared prompt and themselves (additive mask, batch 8, prompt 10, suffix length S) and
the prompt attending to itself (causal, 10 positions). Each setting: 3 warm-up calls, then ``--repeats`` rounds
in which the three take turns (median). The error columns: each output's largest absolute difference from the
same attention computed in float64.

``--model N`` also checks the choice on the model: the engine's simple prompt-tuning loss and prompt gradient of
SmolLM2-135M (seed 0, bbc-topic, batch 8, the first N batches of the run) in bf16 with each attention, against
fp32: the loss, the gradient's relative error ``|g - g_fp32| / |g_fp32|`` and its cosine.

Usage: ``python benchmarks/bench_attention.py [--lengths 64,128,256] [--model 3] [--threads 2]``.
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

from superpos.backbones import fast  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64   # SmolLM2-135M
BATCH, PROMPT = 8, 10                 # the quick and cpu profiles' batch; n = 10 prompt vectors


def bf16_kernel(q, k, v, *, mask=None, causal=False, scale):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale,
                                          enable_gqa=q.shape[1] != k.shape[1])


def bf16_matmuls(q, k, v, *, mask=None, causal=False, scale):
    """Scores and mixing as bf16 batched matmuls, the softmax in float32 (Hugging Face's eager attention)."""
    B, H, Sq, hd = q.shape
    kv_heads, Sk = k.shape[1], k.shape[2]
    group = H // kv_heads
    scores = torch.matmul(q.reshape(B, kv_heads, group * Sq, hd), k.transpose(-1, -2)).float() * scale
    if causal:
        mask = torch.where(torch.ones(Sq, Sk, dtype=torch.bool).tril(Sk - Sq), 0.0, float("-inf"))
    if mask is not None:
        scores = scores.view(B, kv_heads, group, Sq, Sk) + (mask[:, :, None] if mask.dim() == 4 else mask)
    weights = torch.softmax(scores, dim=-1).to(q.dtype).view(B, kv_heads, group * Sq, Sk)
    return torch.matmul(weights, v).view(B, H, Sq, hd)


WAYS = {"bf16 kernel": bf16_kernel, "fp32 kernel": fast.attention, "bf16 matmuls": bf16_matmuls}


def inputs(batch: int, queries: int, keys: int, causal: bool):
    """bf16 q [B, 9, Sq, 64], k and v [B, 3, Sk, 64], the suffix call's additive mask (None when causal) and a
    gradient for the output, all seeded."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, HEAD_DIM, generator=generator).bfloat16().requires_grad_(True)
               for heads, length in ((HEADS, queries), (KV_HEADS, keys), (KV_HEADS, keys)))
    mask = None
    if not causal:  # suffix query i sees the prompt and suffix keys 0..i
        allowed = torch.ones(queries, keys, dtype=torch.bool).tril(diagonal=keys - queries)
        mask = torch.where(allowed, 0.0, float("-inf")).bfloat16()
    return q, k, v, mask, torch.randn(batch, HEADS, queries, HEAD_DIM, generator=generator).bfloat16()


def time_ways(batch, queries, keys, causal, repeats):
    """Median forward and backward milliseconds of each way, and its output's error against float64."""
    q, k, v, mask, grad = inputs(batch, queries, keys, causal)
    scale = HEAD_DIM ** -0.5
    exact = bf16_kernel(*(t.detach().double() for t in (q, k, v)), mask=None if mask is None else mask.double(),
                        causal=causal, scale=scale)
    times = {name: {"forward": [], "backward": []} for name in WAYS}
    errors = {}
    for fn in WAYS.values():
        for _ in range(3):
            fn(q, k, v, mask=mask, causal=causal, scale=scale).backward(grad)
    for _ in range(repeats):
        for name, fn in WAYS.items():
            started = time.perf_counter()
            out = fn(q, k, v, mask=mask, causal=causal, scale=scale)
            middle = time.perf_counter()
            out.backward(grad)
            times[name]["forward"].append(1e3 * (middle - started))
            times[name]["backward"].append(1e3 * (time.perf_counter() - middle))
            errors[name] = (out.detach().double() - exact).abs().max().item()
    return {name: (statistics.median(t["forward"]) + statistics.median(t["backward"]), errors[name])
            for name, t in times.items()}


def model_check(batches: int) -> None:
    """Loss and prompt gradient of SmolLM2 in bf16, with each way of attending, against fp32."""
    import tempfile

    from superpos.engine import ResultsStore, RunConfig
    from superpos.engine.train import Trainer

    chosen, results = fast.attention, {}
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
                for name, fn in WAYS.items() if dtype == "bf16" else [("fp32", chosen)]:
                    fast.attention = fn
                    try:
                        loss = trainer.backbone.loss(batch, trainer.method)
                        grad, = torch.autograd.grad(loss, trainable)
                    finally:
                        fast.attention = chosen
                    results[name, index] = (loss.item(), grad.float().flatten())
    print(f"SmolLM2-135M, simple prompt tuning (seed 0, bbc-topic, batch {BATCH}), bf16 against fp32:")
    for index in range(batches):
        loss32, grad32 = results["fp32", index]
        for name in WAYS:
            loss, grad = results[name, index]
            print(f"  batch {index}: {name:12} loss {loss:.4f} (fp32 {loss32:.4f}), prompt gradient relative error "
                  f"{float((grad - grad32).norm() / grad32.norm()):.4f}, cosine "
                  f"{float(F.cosine_similarity(grad, grad32, dim=0)):.5f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="64,128,256", help="Suffix lengths S (input + target tokens).")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    parser.add_argument("--model", type=int, default=0, metavar="N",
                        help="Also compare SmolLM2's loss and prompt gradient on N batches (0: skip).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"attention in bf16, SmolLM2-135M shape ({HEADS} query heads, {KV_HEADS} key/value heads, head size "
          f"{HEAD_DIM}), CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, kernels "
          f"{torch.backends.cpu.get_cpu_capability()}; forward + backward ms (median of {args.repeats}) and error")
    print(f"{'call':24}" + "".join(f" {name:>14} {'error':>7}" for name in WAYS) + "  bf16 kernel / fp32 kernel")
    calls = [(f"suffix S={s} (+{PROMPT} keys)", BATCH, s, s + PROMPT, False) for s in map(int, args.lengths.split(","))]
    calls.append((f"prompt causal {PROMPT}", 1, PROMPT, PROMPT, True))
    for label, batch, queries, keys, causal in calls:
        r = time_ways(batch, queries, keys, causal, args.repeats)
        print(f"{label:24}" + "".join(f" {ms:14.2f} {error:7.1e}" for ms, error in r.values())
              + f"  {r['bf16 kernel'][0] / r['fp32 kernel'][0]:.2f}x", flush=True)
    if args.model:
        model_check(args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
