#!/usr/bin/env python
"""Training speed: this package's engine against Hugging Face PEFT prompt tuning + transformers' Trainer.

One call (``make bench``) runs, on the same frozen backbone, the same task data in the same order, the same
batch size, prompt length and prompt initialization:

- ``ours-simple`` and ``ours-superpos``: the engine's own training step (``superpos.engine.train.Trainer.
  train_step``: ``backbone.encode`` + ``backbone.loss`` + AdamW on the method's parameters);
- ``peft-trainer``: ``peft.PromptTuningConfig`` (n = 10 virtual tokens, initialized with the very prompt the
  ``simple`` arm starts from) trained by ``transformers.Trainer``, the data prepared as PEFT's causal-LM
  prompt-tuning guide does it (input ids = input + label + eos, labels -100 on the input, every example
  left-padded to one fixed ``max_length``; here the smallest one that cuts no example).

Every arm computes at one precision, resolved once per run: ``--dtype auto`` (the default) asks
``superpos.backbones.precision.resolve_precision``, which gives bf16 where the device runs it natively (CUDA
with bf16, a CPU with avx512_bf16 or AMX) and fp32 elsewhere; ``--dtype fp32|bf16`` overrides. The engine's
arms load the frozen backbone in that type; the PEFT arm trains the very same backbone (same type) and, at
bf16, with ``TrainingArguments(bf16=True)`` (on CPU that needs ``use_cpu=True``, which the arm sets there).
Trainable prompts stay float32 in every arm.

Each arm lives in its own Python process (so its peak memory is its own), and the arms take turns step by
step, the order rotating, so that a change of load on a shared machine hits every arm alike. Each process
also times matmul microbenchmarks in float32 *and* bfloat16 (``torch.mm`` of 2048 x 2048, median of 10
after 2 warm-up calls) before and after its steps: the hardware references for the achieved FLOP/s, both
reported whatever the run's precision. Where one 2048^3 call is predicted to take over 1 s (bf16 emulated
by a CPU without bf16 units: ~1 GFLOP/s), that type's size is halved until it fits (not below 256), with 5
timed calls after 1 warm-up; the first process decides the sizes and all use them, and the printout names them.
Steps are timed wall-clock, the optimizer step and the step's data preparation included; the warm-up step
is dropped and medians are reported. After the same number of steps, every arm is scored the same way: greedy
generation through the engine's evaluation path, scored by the task's scorer (PEFT's learned prompt is
loaded into a ``simple`` method for that).

FLOPs of one training step (causal LM, counted analytically as each arm computes it; docs/SPEED.md):

    4 * N_blocks * R              linear layers on R token rows: 2 forward + 2 backward (input gradients only:
                                  the backbone is frozen, so no weight gradients are computed anywhere)
  + 12 * n_layers * B * Sq * Sk * d   attention scores and mixing: 4 forward + 8 backward (full rectangle)
  + 4 * V * d * H                 LM head on H rows

PEFT+Trainer: R = B * (n + max_length), Sq = Sk = n + max_length, H = R (logits at every position).
ours, plain HF forward: R = B * S (S: the batch's longest [prompt, input, target]), Sq = Sk = S, H = targets.
ours, fast loss: R = n + real tokens (no padding, the prompt once), Sq = S - n, Sk = S, H = targets, and the
last layer's output projection and MLP on H rows only. ``torch.utils.flop_counter`` counts the matmul FLOPs
of one step as a cross-check.

Before it, the goals are checked on this run's numbers: ours-simple's examples/s >= 2x peft-trainer's at the
same precision, its strict score, lenient score and validation loss equal or better, and its achieved
FLOP/s >= 50 % of the bf16 peak (applicable when the run is bf16); the fraction of the fp32 peak is stated too.
The last line printed is ``speedup vs peft+trainer: X.XXx`` (examples/s of ours-simple over peft-trainer).
Results go to ``results/bench/bench_training.json`` (overwritten by every run).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
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
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ARMS = ("ours-simple", "peft-trainer", "ours-superpos", "ours-simple-hf", "ours-simple-eager")
#: ours-simple-hf: the engine with ``Backbone.fast_loss = False`` (the plain Hugging Face forward), to show
#: what the fast causal loss (superpos/backbones/fast.py) adds on top of dynamic padding and the LM head on
#: targets only. ours-simple-eager: the fast loss with its decoder layers eager (``SUPERPOS_COMPILE=0`` in that
#: arm's process), to show what compiling them adds; a default arm only where ours-simple compiles them (bf16 on
#: a CPU), elsewhere it would be ours-simple again.


# ----------------------------------------------------------------------------- measurement helpers
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


# ----------------------------------------------------------------------------- the arms
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


class OursSession:
    """The engine's training step, one call of :meth:`step` per optimizer step."""

    def __init__(self, args, arm: str, store_root: str):
        self.args, self.arm = args, arm
        method = arm.split("-")[1]
        self.trainer = engine_trainer(args, method, store_root)
        self.device, self.backbone = self.trainer.device, self.trainer.backbone
        self.backbone.fast_loss = not arm.endswith("-hf")
        if arm.endswith("-eager"):  # this arm's own process (or a caller that asked for it): layers stay eager
            from superpos.backbones import fast

            os.environ[fast.COMPILE_VARIABLE] = "0"
        self.total = args.steps + args.warmup
        self.times, self.examples, self.tokens, self.positions, self.losses, self.shapes = [], [], [], [], [], []

    def encode(self, examples):
        return self.backbone.encode([e.input_text for e in examples], [e.target_text for e in examples],
                                    max_input_tokens=self.trainer.config.max_input_tokens,
                                    max_target_tokens=self.trainer.max_new_tokens)

    def start(self) -> None:
        self.watch = MemoryWatch(self.device)

    def step(self) -> float:
        trainer = self.trainer
        batch_examples = trainer.batch_at(trainer.step)
        sync(self.device)
        started = time.perf_counter()
        loss = trainer.train_step(batch_examples)
        sync(self.device)
        elapsed = time.perf_counter() - started
        trainer.step += 1
        batch = self.encode(batch_examples)  # shapes only, outside the timed region
        geometry = self.geometry(batch)
        self.times.append(elapsed)
        self.losses.append(loss)
        self.examples.append(len(batch_examples))
        self.tokens.append(batch.token_count)
        self.positions.append(geometry["rows"])
        self.shapes.append(geometry)
        return elapsed

    def geometry(self, batch) -> dict:
        """What this arm's loss computes on ``batch``: rows through the blocks, attention shape, head rows."""
        from superpos.backbones import fast

        n, b = self.trainer.method.n_prompts, len(batch)
        targets = int((batch.labels != -100).sum())
        if self.backbone.kind != "causal":
            return {"rows": b * (n + batch.input_ids.shape[1]), "attn_batch": b, "attn_queries": 0, "attn_keys": 0,
                    "head_rows": targets, "last_layer_rows": None}
        padded = n + batch.input_ids.shape[1] + batch.labels.shape[1]
        if self.backbone.fast_loss and fast.supported(self.backbone.model):
            # Real tokens only, the (input-independent) prompt once; attention on the padded suffix x
            # [prompt, suffix]; the last layer after attention and the head only at the target-reading rows.
            suffix = padded - n
            return {"rows": n + batch.token_count, "attn_batch": b, "attn_queries": suffix, "attn_keys": n + suffix,
                    "head_rows": targets, "last_layer_rows": targets}
        return {"rows": b * padded, "attn_batch": b, "attn_queries": padded, "attn_keys": padded,
                "head_rows": targets, "last_layer_rows": None}

    def finish(self) -> dict:
        args, trainer, backbone = self.args, self.trainer, self.backbone
        memory = self.watch.stop()
        result = {"arm": self.arm, "fast_loss": self.backbone.fast_loss, "losses": [round(x, 4) for x in self.losses],
                  **summarize(self.times, self.examples, self.tokens, self.positions, args.warmup), "memory": memory,
                  "trainable_params": trainer.method.trainable_parameter_count()}
        if backbone.kind == "causal":
            shape = model_shape(backbone.model)
            per_step = [step_flops(shape, **g) for g in self.shapes[args.warmup:]]
            flops = [f["total"] for f in per_step]
            result["flops_per_step_analytic"] = statistics.mean(flops)
            result["flops_breakdown"] = {k: statistics.mean(f[k] for f in per_step) for k in per_step[0]}
            result["achieved_flops"] = statistics.median(f / t for f, t in zip(flops, self.times[args.warmup:]))
            result["model_shape"] = shape
        batch = self.encode(trainer.batch_at(args.warmup))
        result["flops_counted_one_step"] = counted_flops(lambda: backbone.loss(batch, trainer.method).backward())
        if backbone.kind == "causal":
            result["flops_analytic_counted_batch"] = step_flops(model_shape(backbone.model), **self.geometry(batch))
        trainer.optimizer.zero_grad(set_to_none=True)
        started = time.perf_counter()
        point = trainer.evaluate_point()
        result["eval"] = {**score_point(point), "examples": len(trainer.dev_examples),
                          "seconds": round(time.perf_counter() - started, 2),
                          "validation_loss": round(validation_loss(trainer), 4)}
        result["device"] = str(self.device)
        result["backbone"] = repr(backbone)
        result["precision"] = {"backbone_dtype": dtype_name(backbone.dtype),
                               "trainable_dtypes": sorted({dtype_name(p.dtype) for p in trainer.method.parameters()
                                                           if p.requires_grad}),
                               "autocast": type(trainer.autocast).__name__ != "nullcontext",
                               # the fast loss's decoder layers: eager, or compiled (bf16 on a CPU; backbones/fast.py)
                               "decoder_layers": trainer.layers_note().get("decoder_layers", "eager")}
        return result


class PeftSession:
    """PEFT prompt tuning + transformers' Trainer, the data prepared as PEFT's causal-LM prompt-tuning guide does.

    ``Trainer.train()`` runs in the process's main thread, as it does for users (a step run in another
    thread can run at a very different speed under CPU contention: measured here, up to 10x). Its callbacks
    answer the orchestrator: after every optimizer step they report the step's time and wait for the next
    ``step`` command, so the arms can take turns step by step.
    """

    def __init__(self, args, store_root: str):
        import torch
        from datasets import Dataset
        from peft import PromptTuningConfig, PromptTuningInit, get_peft_model
        from torch.utils.data import SequentialSampler
        from transformers import (PrinterCallback, Trainer, TrainerCallback, TrainingArguments,
                                  default_data_collator)

        from superpos.backbones import SEPARATOR, TARGET_PREFIX

        self.args = args
        # The engine's trainer gives the same data, order, backbone weights and initial prompt as ours-simple.
        engine = self.engine = engine_trainer(args, "simple", store_root)
        backbone, device = engine.backbone, engine.device
        self.device = device
        if backbone.kind != "causal":
            raise SystemExit("bench: the PEFT arm follows PEFT's causal-LM guide; use a causal backbone")
        tokenizer, model = backbone.tokenizer, backbone.model
        self.total = total = args.steps + args.warmup
        ordered = [example for step in range(total) for example in engine.batch_at(step)]

        # The guide's preprocessing: input + label (+ eos), labels -100 on the input, left-pad to max_length.
        # Inputs are cut as the engine cuts them (max_input_tokens, separator kept): both see the same text.
        room = args.max_input_tokens - len(backbone._input_prefix) - len(backbone._separator_ids)
        separator = tokenizer(SEPARATOR, add_special_tokens=False).input_ids

        def tokenized(example):
            input_ids = (backbone._input_prefix + tokenizer(example.input_text, add_special_tokens=False).input_ids[:room]
                         + separator)
            label_ids = tokenizer(TARGET_PREFIX + example.target_text, add_special_tokens=False).input_ids
            return input_ids, label_ids[: engine.max_new_tokens - 1] + [tokenizer.eos_token_id]

        self.sequences = [tokenized(example) for example in ordered]
        # max_length: the longest example of the whole training split, so that no example is ever cut.
        self.max_length = max_length = max(sum(map(len, tokenized(e))) for e in engine.train_examples)
        pad = tokenizer.pad_token_id
        rows = {"input_ids": [], "attention_mask": [], "labels": []}
        for input_ids, label_ids in self.sequences:
            ids = input_ids + label_ids
            labels = [-100] * len(input_ids) + label_ids
            rows["input_ids"].append([pad] * (max_length - len(ids)) + ids)
            rows["attention_mask"].append([0] * (max_length - len(ids)) + [1] * len(ids))
            rows["labels"].append([-100] * (max_length - len(ids)) + labels)
        self.dataset = Dataset.from_dict(rows).with_format("torch")

        peft_config = PromptTuningConfig(task_type="CAUSAL_LM", prompt_tuning_init=PromptTuningInit.RANDOM,
                                         num_virtual_tokens=args.n_prompts)
        self.model = model
        self.peft_model = peft_model = get_peft_model(model, peft_config)
        with torch.no_grad():  # the same start as ours-simple: the vocab-sampled prompt the engine built
            self.prompt_weight().copy_(engine.method.prompt_matrix().detach())
        self.trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        self.backbone_dtype = backbone.dtype

        session = self

        class Handover(TrainerCallback):
            """Report each step's wall time to the orchestrator, then wait for its next ``step`` command."""

            def on_step_end(self, args_, state, control, **k):
                sync(device)
                elapsed = time.perf_counter() - session.go_time
                session.times.append(elapsed)
                session.conn.send(("ok", elapsed))
                if state.global_step < total:
                    session.go_time = session.wait_step()

        class InOrderTrainer(Trainer):  # the engine's batches, in the engine's order
            def _get_train_sampler(self, *a, **k):
                return SequentialSampler(self.train_dataset)

        training_args = TrainingArguments(
            output_dir=tempfile.mkdtemp(prefix="bench-peft-"), per_device_train_batch_size=args.batch_size,
            max_steps=total, learning_rate=engine.method.config.lr, weight_decay=engine.method.config.weight_decay,
            lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0, optim="adamw_torch",
            logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            log_level="error", dataloader_num_workers=0, seed=args.seed, use_cpu=device.type != "cuda",
            remove_unused_columns=False,
            # The run's precision: the backbone came from the engine's loader in it, and at bf16 the Trainer's
            # own switch (accelerate autocast) is on too, as a Trainer user runs bf16. Off the GPU,
            # transformers accepts bf16=True only with use_cpu=True (TrainingArguments.__post_init__).
            bf16=args.precision == "bf16")
        self.trainer = InOrderTrainer(model=peft_model, args=training_args, train_dataset=self.dataset,
                                      data_collator=default_data_collator, callbacks=[Handover()])
        self.trainer.remove_callback(PrinterCallback)  # its per-step log lines would interleave with the report
        self.times: list[float] = []

    def prompt_weight(self):
        return self.peft_model.prompt_encoder.default.embedding.weight

    def wait_step(self) -> float:
        """Serve ``peak`` commands until the next ``step`` command; return the time it came."""
        while True:
            command = self.conn.recv()
            if command == "step":
                sync(self.device)
                return time.perf_counter()
            if not (isinstance(command, tuple) and command[0] == "peak"):
                raise RuntimeError(f"bench: unexpected command {command!r} while training")
            self.conn.send(("ok", matmul_peaks(self.device, command[1])))

    def start(self) -> None:
        self.watch = MemoryWatch(self.device)

    def step(self) -> None:
        """The first ``step`` command starts ``Trainer.train()``; its callbacks answer every step command."""
        sync(self.device)
        self.go_time = time.perf_counter()
        self.output = self.trainer.train()
        return None

    def finish(self) -> dict:
        import torch

        args, total = self.args, self.total
        memory = self.watch.stop()
        examples = [args.batch_size] * total
        tokens = [sum(len(i) + len(l) for i, l in self.sequences[s * args.batch_size:(s + 1) * args.batch_size])
                  for s in range(total)]
        positions = [args.batch_size * (args.n_prompts + self.max_length)] * total
        losses = [entry["loss"] for entry in self.trainer.state.log_history if "loss" in entry]
        result = {"arm": "peft-trainer", "losses": [round(x, 4) for x in losses],
                  **summarize(self.times, examples, tokens, positions, args.warmup), "memory": memory,
                  "trainable_params": self.trainable, "max_length": self.max_length,
                  "train_runtime": self.output.metrics.get("train_runtime"),
                  "precision": {"backbone_dtype": dtype_name(self.backbone_dtype),
                                "trainable_dtypes": sorted({dtype_name(p.dtype) for p in self.peft_model.parameters()
                                                            if p.requires_grad}),
                                "training_args_bf16": self.trainer.args.bf16,
                                "use_cpu": self.trainer.args.use_cpu,
                                "accelerate_mixed_precision": str(self.trainer.accelerator.mixed_precision)}}
        shape = model_shape(self.model)
        length = args.n_prompts + self.max_length
        per_step = step_flops(shape, rows=args.batch_size * length, attn_batch=args.batch_size, attn_queries=length,
                              attn_keys=length, head_rows=args.batch_size * length)
        result["flops_per_step_analytic"] = per_step["total"]
        result["flops_breakdown"] = per_step
        result["achieved_flops"] = statistics.median(per_step["total"] / t for t in self.times[args.warmup:])
        first = {k: v.to(self.device) for k, v in self.dataset[args.warmup * args.batch_size:
                                                               (args.warmup + 1) * args.batch_size].items()}
        result["flops_counted_one_step"] = counted_flops(lambda: self.peft_model(**first).loss.backward())
        result["flops_analytic_counted_batch"] = per_step
        self.peft_model.zero_grad(set_to_none=True)

        # Score PEFT's learned prompt through the engine's evaluation path (same generation, same scorer).
        engine = self.engine
        with torch.no_grad():
            engine.method.prompt.copy_(self.prompt_weight().detach())
        engine.step = total
        started = time.perf_counter()
        point = engine.evaluate_point()
        result["eval"] = {**score_point(point), "examples": len(engine.dev_examples),
                          "seconds": round(time.perf_counter() - started, 2),
                          "validation_loss": round(validation_loss(engine), 4)}
        result["device"] = str(self.device)
        return result


class PackingSession:
    """Packed against unpacked training, in one process on the same runs: ``--pack`` R runs (simple and superpos in
    turn, seeds ``--seed``.., each with ``--batch-size`` examples a step), built twice on one shared frozen backbone.
    One copy trains each run alone, one after another (the engine's ``train_step``); the other trains them as one
    packed group (``PackedGroup.train_step``: one forward and one backward for all). Each ``step`` times both, the
    order alternating; the cost per example is a round's time over its ``R x batch`` examples."""

    def __init__(self, args, store_root: str):
        from superpos.engine.packed import PackedGroup

        self.args, self.total = args, args.steps + args.warmup
        methods = [("simple", "superpos")[i % 2] for i in range(args.pack)]
        first = engine_trainer(args, methods[0], store_root)
        self.device, backbone = first.device, first.backbone
        self.alone = [first] + [engine_trainer(args, m, store_root, seed=args.seed + i, backbone=backbone)
                                for i, m in enumerate(methods) if i]
        self.packed = [engine_trainer(args, m, store_root, seed=args.seed + i, backbone=backbone)
                       for i, m in enumerate(methods)]
        self.group = PackedGroup(self.packed, progress=False)
        self.methods = methods
        self.times: dict[str, list[float]] = {"alone": [], "packed": []}

    def start(self) -> None:
        self.watch = MemoryWatch(self.device)

    def step(self) -> float:
        modes = ("alone", "packed") if len(self.times["alone"]) % 2 == 0 else ("packed", "alone")
        for mode in modes:
            sync(self.device)
            started = time.perf_counter()
            if mode == "packed":
                self.group.train_step(self.packed)
            else:
                for trainer in self.alone:
                    trainer.end_step(trainer.train_step(trainer.batch_at(trainer.step)), 0.0)
            sync(self.device)
            self.times[mode].append(time.perf_counter() - started)
        return self.times["alone"][-1] + self.times["packed"][-1]

    def finish(self) -> dict:
        args, warmup = self.args, self.args.warmup
        examples = args.pack * args.batch_size
        out = {"runs": args.pack, "methods": self.methods, "batch_size": args.batch_size, "warmup": warmup,
               "memory": self.watch.stop()}
        for mode, times in self.times.items():
            median = statistics.median(times[warmup:])
            out[mode] = {"round_s_median": round(median, 4), "round_s_all": [round(t, 4) for t in times],
                         "ms_per_example": round(1000 * median / examples, 3)}
        out["packed_over_alone"] = round(out["packed"]["round_s_median"] / out["alone"]["round_s_median"], 3)
        gaps = [abs(a - b) / abs(a) for x, y in zip(self.alone, self.packed)
                for (_, a), (_, b) in zip(x.loss_curve, y.loss_curve)]
        out["loss_max_relative_difference"] = max(gaps) if gaps else None
        out["device"], out["threads"] = str(self.device), torch_threads()
        return out


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def packing_lines(packing: dict) -> list[str]:
    """The packed/unpacked comparison, side by side."""
    alone, packed = packing["alone"], packing["packed"]
    gap = packing["loss_max_relative_difference"]
    timed = len(alone["round_s_all"]) - packing["warmup"]
    return ["", f"packing: {packing['runs']} runs ({', '.join(packing['methods'])}), batch {packing['batch_size']} "
                f"each, in one process on {packing['device']} ({packing['threads']} threads), alone and packed in "
                f"turn: median of {timed} rounds after {packing['warmup']} warm-up",
            f"  alone, one run after another: {alone['ms_per_example']:.2f} ms/example ({alone['round_s_median']:.3f} s "
            f"a round)",
            f"  packed, one forward/backward: {packed['ms_per_example']:.2f} ms/example ({packed['round_s_median']:.3f} s "
            f"a round); packed/alone {packing['packed_over_alone']:.2f}x",
            f"  losses, packed against alone: max relative difference {gap:.1e}" if gap is not None else
            "  losses: no step to compare"]


def arm_worker(arm: str, arg_values: dict, conn) -> None:
    """One arm in its own process: build it, then obey the orchestrator (("peak", plans), start, step, finish)."""
    import traceback

    try:
        import torch

        args = argparse.Namespace(**arg_values)
        torch.manual_seed(args.seed)
        store_root = tempfile.mkdtemp(prefix="bench-store-")
        session = (PeftSession(args, store_root) if arm == "peft-trainer" else PackingSession(args, store_root)
                   if arm == "packing" else OursSession(args, arm, store_root))
        session.conn = conn
        conn.send(("ok", {"threads": torch.get_num_threads(), "device": str(session.device)}))
        while True:
            command = conn.recv()
            if isinstance(command, tuple) and command[0] == "peak":  # ("peak", plans or None)
                conn.send(("ok", matmul_peaks(session.device, command[1])))
            elif command == "start":
                session.start()
                conn.send(("ok", None))
            elif command == "step":
                elapsed = session.step()
                if elapsed is not None:  # (the PEFT arm answers from inside Trainer.train())
                    conn.send(("ok", elapsed))
            elif command == "finish":
                conn.send(("ok", session.finish()))
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


def gflops(x: float) -> str:
    return f"{x / 1e9:.1f}"


class Arm:
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
        handles[name] = Arm(name, args, context)
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
        handle = Arm("packing", args, context)
        handle.call("start")
        for step in range(total):
            handle.call("step")
        packing = handle.call("finish")
        handle.process.join(timeout=60)
    return report(args, arms, results, started, packing)


def percent(x: float) -> str:
    return f"{x:.0%}"


def peak_line(dtype: str, results: dict) -> str:
    values = [v for r in results.values() for v in r["matmul_peak_flops"][dtype]]
    plan = next(iter(results.values()))["matmul_peaks"][0][dtype]
    size, repeats, warmup = plan["size"], plan["repeats"], plan["warmup"]
    note = "" if size == PEAK_SIZE else (f"; smaller than 2048^3 because one 2048^3 call was predicted to take "
                                         f"{plan['predicted_s_per_2048_call']:.1f} s")
    return (f"  {dtype}: {gflops(statistics.median(values))} GFLOP/s (range {gflops(min(values))}-"
            f"{gflops(max(values))}; {size}^3 torch.mm, median of {repeats} after {warmup} warm-up, "
            f"{len(values)} measurements{note})")


def metric_verdict(r: dict, base: dict) -> tuple[bool, str]:
    """Whether ``r``'s strict score, lenient score and validation loss each equal or beat ``base``'s."""
    mine, theirs = r["eval"], base["eval"]
    checks = [("strict score", mine["score"], theirs["score"], mine["score"] >= theirs["score"]),
              ("lenient score", mine["lenient_score"], theirs["lenient_score"],
               mine["lenient_score"] >= theirs["lenient_score"]),
              ("validation loss", mine["validation_loss"], theirs["validation_loss"],
               mine["validation_loss"] <= theirs["validation_loss"])]
    worse = [name for name, _, _, ok in checks if not ok]
    detail = ", ".join(f"{name} {a:.{3 if 'loss' in name else 1}f} vs {b:.{3 if 'loss' in name else 1}f}"
                       for name, a, b, _ in checks)
    return not worse, (detail if not worse else f"{detail}; worse on: {', '.join(worse)}")


def report(args, arms, results, started, packing: dict | None = None) -> int:
    precision, reason = args.precision, args.precision_reason
    own_peaks = {arm: {d: statistics.median(results[arm]["matmul_peak_flops"][d]) for d in PEAK_DTYPES}
                 for arm in arms}
    lines = [f"bench: {args.backbone} on {args.task}, batch {args.batch_size}, n_prompts {args.n_prompts}, "
             f"{args.steps} timed steps after {args.warmup} warm-up, {results[arms[0]]['device']}, "
             f"{results[arms[0]]['threads']} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}",
             f"precision: {precision} for every arm ({reason})"]
    for arm in arms:
        p = results[arm]["precision"]
        extra = (f", TrainingArguments(bf16={p['training_args_bf16']}, use_cpu={p['use_cpu']}), accelerate "
                 f"mixed_precision={p['accelerate_mixed_precision']}" if "training_args_bf16" in p
                 else f", autocast {'on' if p['autocast'] else 'off'}, decoder layers {p.get('decoder_layers', 'eager')}")
        lines.append(f"  {arm}: backbone {p['backbone_dtype']}, trainable {'/'.join(p['trainable_dtypes'])}{extra}")
    lines.append("matmul peaks, measured in the arms' own processes before and after their steps (median):")
    lines += [peak_line(d, results) for d in PEAK_DTYPES]
    lines += ["",
              f"{'arm':<18}{'step s':>8}{'ex/s':>8}{'tok/s':>8}{'rows/step':>10}{'GFLOP/step':>12}"
              f"{'GFLOP/s':>9}{'%fp32pk':>8}{'%bf16pk':>8}{'mem MB':>9}{'+train MB':>10}{'score':>7}{'lenient':>8}"
              f"{'val loss':>9}"]
    for arm in arms:
        r = results[arm]
        achieved = r.get("achieved_flops")
        r["achieved_fraction_of_peak"] = ({d: achieved / own_peaks[arm][d] for d in PEAK_DTYPES}
                                          if achieved else None)
        fraction = r["achieved_fraction_of_peak"] or {}
        lines.append(
            f"{arm:<18}{r['step_s_median']:>8.3f}{r['examples_per_s']:>8.2f}{r['tokens_per_s']:>8.0f}"
            f"{r['computed_positions_per_step']:>10.0f}"
            f"{gflops(r.get('flops_per_step_analytic', 0)):>12}"
            f"{(gflops(achieved) if achieved else '-'):>9}"
            + "".join(f"{(percent(fraction[d]) if achieved else '-'):>8}" for d in PEAK_DTYPES)
            + f"{r['memory']['peak_mb']:>9.0f}{r['memory']['training_extra_mb']:>10.0f}"
            f"{r['eval']['score']:>7.1f}{r['eval']['lenient_score']:>8.1f}{r['eval']['validation_loss']:>9.3f}")
    lines.append("(%fp32pk, %bf16pk: the arm's GFLOP/s over the fp32 and the bf16 matmul peak of its own process)")
    summary = {}
    if "peft-trainer" in results:
        base = results["peft-trainer"]
        lines.append("")
        lines.append(f"peft-trainer pads every example to max_length={base['max_length']} "
                     f"(+{args.n_prompts} virtual tokens); eval on {base['eval']['examples']} validation examples, "
                     f"greedy generation, the task's scorer")
        for arm in arms:
            if arm == "peft-trainer":
                continue
            r = results[arm]
            ratio = r["examples_per_s"] / base["examples_per_s"]
            summary[arm] = {"examples_per_s_ratio": round(ratio, 3),
                            "tokens_per_s_ratio": round(r["tokens_per_s"] / base["tokens_per_s"], 3),
                            "flops_per_step_ratio": round(r.get("flops_per_step_analytic", 0)
                                                          / base["flops_per_step_analytic"], 3),
                            "peak_memory_ratio": round(r["memory"]["peak_mb"] / base["memory"]["peak_mb"], 3),
                            "training_extra_memory_ratio": round(r["memory"]["training_extra_mb"]
                                                                 / max(base["memory"]["training_extra_mb"], 1e-9), 3),
                            "score_delta": round(r["eval"]["score"] - base["eval"]["score"], 2),
                            "lenient_score_delta": round(r["eval"]["lenient_score"] - base["eval"]["lenient_score"], 2),
                            "validation_loss_delta": round(r["eval"]["validation_loss"]
                                                           - base["eval"]["validation_loss"], 4)}
            lines.append(f"{arm} / peft-trainer: examples/s {ratio:.2f}x, tokens/s "
                         f"{summary[arm]['tokens_per_s_ratio']:.2f}x, FLOPs/step {summary[arm]['flops_per_step_ratio']:.2f}x, "
                         f"training memory {summary[arm]['training_extra_memory_ratio']:.2f}x, "
                         f"score {r['eval']['score']:.1f} vs {base['eval']['score']:.1f} "
                         f"(lenient {r['eval']['lenient_score']:.1f} vs {base['eval']['lenient_score']:.1f}, "
                         f"validation loss {r['eval']['validation_loss']:.3f} vs {base['eval']['validation_loss']:.3f})")
    if "ours-simple" in results and "ours-simple-eager" in results:
        compiled, eager = results["ours-simple"], results["ours-simple-eager"]
        summary["compiled_over_eager"] = round(compiled["examples_per_s"] / eager["examples_per_s"], 3)
        lines.append(f"ours-simple / ours-simple-eager: examples/s {summary['compiled_over_eager']:.2f}x "
                     f"(decoder layers {compiled['precision']['decoder_layers']} against eager, steps alternating)")
    for arm in arms:
        r = results[arm]
        if "flops_analytic_counted_batch" in r:
            same = r["flops_analytic_counted_batch"]
            lines.append(f"{arm}: one batch, analytic {gflops(same['total'])} G (linear {gflops(same['linear'])}, "
                         f"attention {gflops(same['attention'])}, LM head {gflops(same['lm_head'])}); torch flop "
                         f"counter {gflops(r['flops_counted_one_step'])} G")
    lines.append("(torch's flop counter does not see the fused CPU attention kernel: compare it with linear + LM head)")

    goals = goal_lines(arms, results, own_peaks, precision, reason,
                       (args.bf16_native, args.bf16_native_why))
    lines += ["", f"goals, measured in this run (every arm {precision}):"] + [f"  {g['line']}" for g in goals]
    if packing is not None:
        lines += packing_lines(packing)
    lines.append(f"total wall time {time.perf_counter() - started:.0f} s")

    payload = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "args": vars(args),
               "precision": precision, "precision_reason": reason,
               "matmul_peak_flops_median": {d: statistics.median(v for r in results.values()
                                                                 for v in r["matmul_peak_flops"][d])
                                            for d in PEAK_DTYPES},
               "arms": results, "ratios": summary, "goals": goals, "packing": packing}
    out_dir = Path(args.out) if Path(args.out).is_absolute() else REPO / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_training.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    shown = out_dir.relative_to(REPO) if out_dir.is_relative_to(REPO) else out_dir
    lines.append(f"results: {shown / 'bench_training.json'}")
    print("\n".join(lines))
    if "peft-trainer" in results and "ours-simple" in results:
        print(f"speedup vs peft+trainer: {summary['ours-simple']['examples_per_s_ratio']:.2f}x")
    return 0


SPEEDUP_GOAL, BF16_PEAK_GOAL = 2.0, 0.5


def goal_lines(arms, results, own_peaks, precision: str, reason: str, native: tuple) -> list[dict]:
    """The goals, judged on this run's numbers, for ours-simple (the like-for-like method; ours-superpos too)."""
    goals = []
    ours = [a for a in ("ours-simple", "ours-superpos") if a in results]
    base = results.get("peft-trainer")
    for arm in ours:
        r = results[arm]
        if base is not None:
            ratio = r["examples_per_s"] / base["examples_per_s"]
            met = ratio >= SPEEDUP_GOAL
            goals.append({"arm": arm, "goal": "examples_per_s_ratio", "value": round(ratio, 3), "met": met,
                          "line": f"{arm}: examples/s {ratio:.2f}x peft-trainer's, both {precision} (goal >= "
                                  f"{SPEEDUP_GOAL:.0f}x): " + ("met" if met else f"missed: {ratio:.2f}x")})
            met, detail = metric_verdict(r, base)
            goals.append({"arm": arm, "goal": "metric_equal_or_better", "met": met,
                          "line": f"{arm}: metric equal or better than peft-trainer's: "
                                  f"{'met' if met else 'missed'} ({detail})"})
        achieved = r.get("achieved_flops")
        if not achieved:
            continue
        bf16 = achieved / own_peaks[arm]["bf16"]
        fp32 = achieved / own_peaks[arm]["fp32"]
        shown = f"{percent(bf16)} of the bf16 peak ({gflops(achieved)} of {gflops(own_peaks[arm]['bf16'])} GFLOP/s)"
        if precision == "bf16":
            met = bf16 >= BF16_PEAK_GOAL
            verdict = "met" if met else "missed"
            line = f"{arm}: {shown} (goal >= {BF16_PEAK_GOAL:.0%}): {verdict}"
            if not native[0]:
                line += f" (bf16 is not native here: {native[1]})"
        else:
            met = None
            line = (f"{arm}: bf16 peak goal (>= {BF16_PEAK_GOAL:.0%}): not applicable here, precision is "
                    f"{precision} because {reason}; for the record, {shown}")
        goals.append({"arm": arm, "goal": "bf16_peak_fraction", "value": round(bf16, 4), "met": met, "line": line})
        goals.append({"arm": arm, "goal": "fp32_peak_fraction", "value": round(fp32, 4), "met": None,
                      "line": f"{arm}: {percent(fp32)} of the fp32 peak ({gflops(achieved)} of "
                              f"{gflops(own_peaks[arm]['fp32'])} GFLOP/s), computing in {precision}"})
    return goals


if __name__ == "__main__":
    sys.exit(main())
