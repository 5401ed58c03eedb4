"""``bench_training.py``'s engine arms: the engine's own training step, and packed against unpacked runs.

- :class:`EngineArm` runs ``ours-simple``, ``ours-superpos``, ``ours-simple-hf`` (``Backbone.fast_loss = False``:
  the plain Hugging Face forward) and ``ours-simple-eager`` (the fast loss with eager decoder layers,
  ``SUPERPOS_COMPILE=0`` in its process): one call of ``step`` per optimizer step of
  ``superpos.engine.train.Trainer.train_step``.
- :class:`PackingArm` trains ``--pack`` runs alone and as one packed group, in turn, in one process.

Each lives in its own process (``bench_training.arm_worker``), which calls ``start``, ``step`` and ``finish``.
"""
from __future__ import annotations

import os
import statistics
import time

from common import (MemoryWatch, counted_flops, dtype_name, engine_trainer, model_shape, score_point, step_flops,
                    summarize, sync, torch_threads, validation_loss)


class EngineArm:
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
        from superpos.engine.provenance import fast_path_note

        result["precision"] = {"backbone_dtype": dtype_name(backbone.dtype),
                               "trainable_dtypes": sorted({dtype_name(p.dtype) for p in trainer.method.parameters()
                                                           if p.requires_grad}),
                               "autocast": type(trainer.autocast).__name__ != "nullcontext",
                               # the fast loss's decoder layers: eager, or compiled (bf16 on a CPU; backbones/fast.py)
                               "decoder_layers": fast_path_note(backbone).get("decoder_layers", "eager")}
        return result


class PackingArm:
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
