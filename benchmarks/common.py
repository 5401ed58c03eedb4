"""Helpers shared by ``bench_training.py``'s arms: matmul peaks, memory, step summaries, FLOP counts, the engine run.

FLOPs of one training step (causal LM, counted analytically as each arm computes it; docs/SPEED.md, section 1):

    4 * N_blocks * R              linear layers on R token rows: 2 forward + 2 backward (input gradients only:
                                  the backbone is frozen, so no weight gradients are computed anywhere)
  + 12 * n_layers * B * Sq * Sk * d   attention scores and mixing: 4 forward + 8 backward (full rectangle)
  + 4 * V * d * H                 LM head on H rows

PEFT+Trainer: R = B * (n + max_length), Sq = Sk = n + max_length, H = R (logits at every position).
ours, plain HF forward: R = B * S (S: the batch's longest [prompt, input, target]), Sq = Sk = S, H = targets.
ours, fast loss: R = n + real tokens (no padding, the prompt once), Sq = S - n, Sk = S, H = targets, and the
last layer's output projection and MLP on H rows only. ``torch.utils.flop_counter`` counts the matmul FLOPs
of one step as a cross-check.

Nothing here imports torch at module level: the caller sets ``OMP_WAIT_POLICY`` before torch is imported.
"""
from __future__ import annotations

import statistics
import time

# ----------------------------------------------------------------------------- matmul peaks
PEAK_DTYPES = ("fp32", "bf16")
PEAK_SIZE, PEAK_REPEATS, PEAK_WARMUP = 2048, 10, 2
PEAK_SMALL_REPEATS, PEAK_SMALL_WARMUP, PEAK_MIN_SIZE, PEAK_CALL_BUDGET_S = 5, 1, 256, 1.0
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def matmul_peak(device, dtype: str = "fp32", size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS,
                warmup: int = PEAK_WARMUP) -> float:
    """Median FLOP/s of a ``size x size`` matmul in ``dtype`` on ``device`` (``warmup`` untimed calls first)."""
    import torch

    kind = getattr(torch, TORCH_DTYPES[dtype])
    a = torch.randn(size, size, device=device, dtype=kind)
    b = torch.randn(size, size, device=device, dtype=kind)
    times = []
    for i in range(repeats + warmup):
        sync(device)
        started = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return 2 * size ** 3 / statistics.median(times)


def peak_plan(device, dtype: str) -> dict:
    """Size, timed calls and warm-up calls of ``dtype``'s microbenchmark on ``device``.

    2048^3, 10 calls after 2 warm-up, unless a 512^3 probe (the fastest of 3 calls after 1 warm-up) predicts
    a 2048^3 call to take over ``PEAK_CALL_BUDGET_S`` (bf16 without bf16 units: ~1 GFLOP/s, ~15 s a call);
    then the size is halved until it fits (not below 256) and 5 calls are timed after 1 warm-up.
    """
    import torch

    probe = 512
    kind = getattr(torch, TORCH_DTYPES[dtype])
    a = torch.randn(probe, probe, device=device, dtype=kind)
    b = torch.randn(probe, probe, device=device, dtype=kind)
    times = []
    for i in range(4):
        sync(device)
        started = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if i:
            times.append(time.perf_counter() - started)
    rate = 2 * probe ** 3 / min(times)
    size = PEAK_SIZE
    while size > PEAK_MIN_SIZE and 2 * size ** 3 / rate > PEAK_CALL_BUDGET_S:
        size //= 2
    full = size == PEAK_SIZE
    return {"size": size, "repeats": PEAK_REPEATS if full else PEAK_SMALL_REPEATS,
            "warmup": PEAK_WARMUP if full else PEAK_SMALL_WARMUP, "probe_flops": rate,
            "predicted_s_per_2048_call": round(2 * PEAK_SIZE ** 3 / rate, 3)}


def matmul_peaks(device, plans: dict | None) -> dict:
    """``{dtype: {"flops", "size", "repeats", "warmup"}}`` for fp32 and bf16; ``plans`` None: decide them here."""
    peaks = {}
    for dtype in PEAK_DTYPES:
        plan = dict(plans[dtype]) if plans else peak_plan(device, dtype)
        flops = matmul_peak(device, dtype, plan["size"], plan["repeats"], plan["warmup"])
        peaks[dtype] = {**plan, "flops": flops}
    return peaks


# ----------------------------------------------------------------------------- timing, memory, FLOPs
def sync(device) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def dtype_name(dtype) -> str:
    name = str(dtype).replace("torch.", "")
    return {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name, name)


def proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class MemoryWatch:
    """Peak memory while training: the CUDA allocator's peak, or on CPU the process's peak resident set.

    On CPU the kernel's high-water mark (``VmHWM``) is reset when training starts (``/proc/self/clear_refs``,
    Linux >= 4.0) and read when it ends, so the model loading before does not count. (No sampling thread:
    one that wakes every few ms fights the training thread for the GIL and slows it several-fold.)
    """

    def __init__(self, device):
        import torch

        self.device, self.cuda = device, device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            self.baseline = torch.cuda.memory_allocated(device) / 2**20
            return
        self.baseline = proc_status_mb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.kind = "process peak RSS (VmHWM, reset when training started)"
        except OSError:
            self.kind = "process peak RSS over its whole life (VmHWM could not be reset)"

    def stop(self) -> dict:
        import torch

        if self.cuda:
            peak, kind = torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda max_memory_allocated"
        else:
            peak, kind = proc_status_mb("VmHWM"), self.kind
        return {"peak_mb": round(peak, 1), "before_training_mb": round(self.baseline, 1),
                "training_extra_mb": round(peak - self.baseline, 1), "kind": kind}


def model_shape(model) -> dict:
    """Sizes the FLOP formula needs (causal LMs): block parameters, per-layer parts, layers, width, vocabulary."""
    config = model.config
    blocks = getattr(getattr(model, "model", model), "layers", None)
    layer = blocks[0] if blocks is not None and len(blocks) else None
    count = lambda module: sum(p.numel() for p in module.parameters()) if module is not None else 0  # noqa: E731
    after_attention = 0
    if layer is not None:  # the part of the last layer the fast path runs only where the LM head reads
        after_attention = (count(getattr(getattr(layer, "self_attn", None), "o_proj", None))
                           + count(getattr(layer, "mlp", None)) + count(getattr(layer, "post_attention_layernorm", None)))
    return {"block_params": count(blocks), "last_layer_after_attention_params": after_attention,
            "n_layers": getattr(config, "num_hidden_layers", None), "d": getattr(config, "hidden_size", None),
            "vocab": getattr(config, "vocab_size", None), "total_params": count(model)}


def step_flops(shape: dict, rows: int, attn_batch: int, attn_queries: int, attn_keys: int, head_rows: int,
               last_layer_rows: int | None = None) -> dict:
    """Analytic FLOPs of one prompt-tuning step of a causal LM (module docstring), as the arm computes it.

    ``rows`` token rows go through the blocks' linear layers (padded positions included where the arm pads);
    attention is ``attn_batch`` sequences of ``attn_queries x attn_keys``; the LM head runs on ``head_rows``;
    ``last_layer_rows``: rows of the last layer's output projection and MLP when fewer than ``rows``.
    """
    linear = 4 * shape["block_params"] * rows
    if last_layer_rows is not None:
        linear -= 4 * shape["last_layer_after_attention_params"] * (rows - last_layer_rows)
    attention = 12 * shape["n_layers"] * attn_batch * attn_queries * attn_keys * shape["d"]
    head = 4 * shape["vocab"] * shape["d"] * head_rows
    return {"linear": linear, "attention": attention, "lm_head": head, "total": linear + attention + head}


def counted_flops(fn) -> int:
    """Matmul FLOPs of ``fn()`` (forward and backward) as torch's FLOP counter sees them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def summarize(times: list[float], examples: list[int], tokens: list[int], positions: list[int], warmup: int) -> dict:
    t, e, k, p = times[warmup:], examples[warmup:], tokens[warmup:], positions[warmup:]
    median = statistics.median(t)
    return {"step_s_median": round(median, 4), "step_s_all": [round(x, 4) for x in times],
            "warmup_steps": warmup, "timed_steps": len(t),
            "examples_per_s": round(statistics.median([a / b for a, b in zip(e, t)]), 3),
            "tokens_per_s": round(statistics.median([a / b for a, b in zip(k, t)]), 1),
            "positions_per_s": round(statistics.median([a / b for a, b in zip(p, t)]), 1),
            "real_tokens_per_step": round(statistics.mean(k), 1),
            "computed_positions_per_step": round(statistics.mean(p), 1)}


# ----------------------------------------------------------------------------- the engine run every arm builds on
def engine_trainer(args, method: str, store_root: str, *, seed: int | None = None, backbone=None):
    """The engine's own Trainer for this benchmark's run (loads task data, backbone, method); ``backbone``: an
    already loaded one to share, ``seed``: another seed than ``--seed``."""
    from superpos.engine import ResultsStore, RunConfig
    from superpos.engine.train import Trainer

    config = RunConfig(backbone=args.backbone, task=args.task, method=method,
                       method_config={"n_prompts": args.n_prompts}, batch_size=args.batch_size,
                       max_steps=args.steps + args.warmup, eval_every=0, eval_limit=args.eval_limit,
                       eval_batch_size=args.eval_batch_size, train_limit=args.train_limit,
                       max_input_tokens=args.max_input_tokens, device=args.device, dtype=args.precision,
                       seed=args.seed if seed is None else seed).resolved()
    return Trainer(config, config.run_hash(), ResultsStore(store_root), None, progress=False, backbone=backbone)


def validation_loss(trainer, batch_size: int = 16) -> float:
    """Teacher-forced cross-entropy of the targets of the scored validation examples (a sensitive metric
    after few steps, when greedy generation may not produce a whole label word yet)."""
    import torch

    examples, total, count = trainer.dev_examples, 0.0, 0
    trainer.method.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch = trainer.backbone.encode([e.input_text for e in chunk], [e.target_text for e in chunk],
                                            max_input_tokens=trainer.config.max_input_tokens,
                                            max_target_tokens=trainer.max_new_tokens)
            tokens = int((batch.labels != -100).sum())
            total += trainer.backbone.loss(batch, trainer.method).item() * tokens
            count += tokens
    return total / max(count, 1)


def score_point(point: dict) -> dict:
    return {"score": point["score"], "lenient_score": point["lenient_score"], "metrics": point["metrics"],
            "invalid_rate": point["invalid_rate"]}


# ----------------------------------------------------------------------------- formatting
def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def gflops(x: float) -> str:
    return f"{x / 1e9:.1f}"


def percent(x: float) -> str:
    return f"{x:.0%}"
