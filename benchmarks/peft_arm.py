"""``bench_training.py``'s ``peft-trainer`` arm: PEFT prompt tuning trained by ``transformers.Trainer``.

The data are prepared as PEFT's causal-LM prompt-tuning guide does it: input ids = input + label + eos, labels
-100 on the input, every example left-padded to one fixed ``max_length`` (here the smallest one that cuts no
training example). The engine's own trainer supplies the same data in the same order, the same backbone
weights (in the run's precision) and the same initial prompt as ``ours-simple``; at bf16 the Trainer runs with
``TrainingArguments(bf16=True)`` (on a CPU with ``use_cpu=True``, which transformers requires there). After the
steps, PEFT's learned prompt is loaded into a ``simple`` method and scored through the engine's evaluation path.
"""
from __future__ import annotations

import statistics
import tempfile
import time

from common import (MemoryWatch, counted_flops, dtype_name, engine_trainer, matmul_peaks, model_shape, score_point,
                    step_flops, summarize, sync, validation_loss)


class PeftArm:
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

        arm = self

        class Handover(TrainerCallback):
            """Report each step's wall time to the orchestrator, then wait for its next ``step`` command."""

            def on_step_end(self, args_, state, control, **k):
                sync(device)
                elapsed = time.perf_counter() - arm.go_time
                arm.times.append(elapsed)
                arm.conn.send(("ok", elapsed))
                if state.global_step < total:
                    arm.go_time = arm.wait_step()

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
