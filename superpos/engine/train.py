"""One run, top to bottom: config -> data -> backbone -> method -> AdamW loop -> evaluations -> record.

The loop follows the paper (§4.4): AdamW with the method's lr and weight decay, no scheduler,
evaluation on the validation split every epoch (or every k steps) by greedy generation,
best-epoch selection. Everything needed to resume sits in a checkpoint written at every eval
point and on Ctrl-C; a resumed run on CPU ends with exactly the uninterrupted run's result.
"""
from __future__ import annotations

import math
import platform
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any

import torch

from ..backbones.precision import resolve_precision
from ..paths import REPO_ROOT
from .config import CODE_VERSION, RunConfig, as_run_config
from .evaluate import evaluate, max_new_tokens_for
from .store import ResultsStore, atomic_write_bytes, atomic_write_json

LOSS_POINTS = 400  # the loss curve keeps about this many points, whatever the run length


class RunError(ValueError):
    """A run cannot start: a missing dependency run, an impossible combination."""


class NonFiniteLoss(RuntimeError):
    pass


# ---------------------------------------------------------------- public entry point
def run(config: RunConfig | dict, store: ResultsStore, *, retry_failed: bool = False, progress: bool = True) -> dict:
    """Run ``config`` unless the store already has it; return its record (``record["cached"]`` says which).

    Resumes from the store's checkpoint when one exists. A non-finite loss ends the run with
    status ``failed``; any other exception propagates after the checkpoint is safe.
    """
    config = as_run_config(config).resolved()
    run_hash = config.run_hash()
    record = store.get(run_hash)
    if record is not None and (record["status"] == "done" or not (retry_failed or record.get("retryable"))):
        return {**record, "cached": True}
    store.ensure_writable()
    source_prompts = load_source_prompts(config, store)
    return {**Trainer(config, run_hash, store, source_prompts, progress=progress).fit(), "cached": False}


def load_source_prompts(config: RunConfig, store: ResultsStore) -> torch.Tensor | None:
    """ATTEMPT's source prompts [k, n, d], from the stored prompts of finished source runs."""
    if not config.sources:
        return None
    from safetensors.torch import load_file

    prompts = []
    for source in config.sources:
        record = store.get(source)
        if record is None or record["status"] != "done" or not record.get("prompt_path"):
            raise RunError(f"sources: dependency run {source} is not finished in {store.root}; run the source tasks first "
                           "(a grid with attempt_sources does this)")
        prompts.append(load_file(str(store.root / record["prompt_path"]))["prompt"])
    return torch.stack(prompts)


# ---------------------------------------------------------------- helpers
def tqdm_disabled() -> bool:
    """``TQDM_DISABLE=1`` silences the engine's bars even where ``progress=True`` is passed (tqdm's own
    environment default loses to an explicit ``disable=``); notebooks' kernels set it."""
    import os

    return os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("device: CUDA was asked for but torch sees no GPU")
    return torch.device(name)


def score_dict(score: Any) -> dict:
    return score.to_dict()


def git_state() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "superpos"))
    return {"commit": commit or None, "dirty": dirty}


def versions() -> dict:
    import transformers

    import superpos

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "superpos": superpos.__version__}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB; process-wide peak


@contextmanager
def deferred_interrupt():
    """Turn Ctrl-C into a flag checked at step boundaries, so a checkpoint is never half-updated.

    A second Ctrl-C interrupts at once.
    """
    state = {"interrupted": False}
    if sys.platform == "win32" or not _is_main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["interrupted"]:
            raise KeyboardInterrupt
        state["interrupted"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


TRUNCATION_SAMPLE = 5000  # inputs tokenized per split to measure truncation (all of them in smaller splits)


def truncation_rates(backbone, train_examples: list, eval_examples: list, max_input_tokens: int) -> dict:
    """The fraction of training and evaluation inputs longer than ``max_input_tokens`` (cut before the prompt is
    prepended), measured on up to ``TRUNCATION_SAMPLE`` evenly spaced examples of each split."""
    def rate(examples: list) -> float:
        sample = examples[::max(1, -(-len(examples) // TRUNCATION_SAMPLE))]
        return round(backbone.truncated_count([e.input_text for e in sample], max_input_tokens) / len(sample), 4)

    return {"max_input_tokens": max_input_tokens, "train": rate(train_examples), "eval": rate(eval_examples),
            "sampled": min(len(train_examples), TRUNCATION_SAMPLE)}


# ---------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, config: RunConfig, run_hash: str, store: ResultsStore, source_prompts, *, progress: bool = True):
        from ..backbones import load_backbone
        from ..methods import METHODS, build_method
        from ..tasks import get_task

        self.config, self.run_hash, self.store, self.progress = config, run_hash, store, progress
        self.started = datetime.now(timezone.utc)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)

        # Data first: a bad task or a missing data folder fails before any model loads.
        self.task = get_task(config.task)
        splits = self.task.splits(config.protocol, seed=config.seed).limit(config.train_limit, config.eval_limit,
                                                                           config.seed)
        self.train_examples, self.dev_examples, self.test_examples = splits.train, splits.dev, splits.test
        if not self.train_examples or not self.dev_examples:
            raise RunError(f"task: {config.task} has an empty training or evaluation split")

        # bf16 only where the device runs it natively (precision.py); full fine-tuning trains the backbone's own
        # weights, so they stay fp32 and bf16 enters through autocast.
        self.precision, self.precision_reason = resolve_precision(config.dtype, self.device)
        self.backbone = load_backbone(config.backbone, dropout=config.dropout, dropout_rate=config.dropout_rate,
                                      device=str(self.device),
                                      dtype="fp32" if config.method == "full" else self.precision)
        method_config = METHODS[config.method][0].from_dict(config.method_config)
        self.method = build_method(method_config, self.backbone, label_words=self.task.label_words,
                                   source_prompts=source_prompts, seed=config.seed).to(self.device)
        self.optimizer = torch.optim.AdamW(self.method.param_groups())
        self.truncation = truncation_rates(self.backbone, self.train_examples, self.dev_examples,
                                           config.max_input_tokens)
        self.max_new_tokens = max_new_tokens_for(self.backbone, self.task)

        steps_per_epoch = math.ceil(len(self.train_examples) / config.batch_size)
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = min(config.epochs * steps_per_epoch, config.max_steps or 10**12)
        self.log_every = max(1, self.total_steps // LOSS_POINTS)
        uses_autocast = self.precision != "fp32" and (config.method == "full" or self.device.type == "cuda")
        low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self.autocast = torch.autocast(self.device.type, dtype=low) if uses_autocast else nullcontext()

        # Mutable state: everything in here goes into a checkpoint.
        self.step = 0
        self.history: list[dict] = []
        self.loss_curve: list[list[float]] = []
        self.best: dict | None = None          # the best strict point: selects the checkpoint
        self.best_lenient: dict | None = None  # the best lenient point, reported beside it
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.train_tokens = 0
        self.pending_loss: list[float] = []

    # -- data order: a function of (seed, epoch) only, so a resumed run sees the same batches
    def epoch_order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_examples), generator=generator).tolist()

    def batch_at(self, step: int) -> list:
        epoch, position = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        size = self.config.batch_size
        return [self.train_examples[i] for i in order[position * size:(position + 1) * size]]

    def is_eval_step(self, step: int) -> bool:
        """``step`` counts finished optimizer steps."""
        if step == self.total_steps:
            return True
        if self.config.eval_every:
            return step % self.config.eval_every == 0
        return step % self.steps_per_epoch == 0

    # -- one optimizer step
    def train_step(self, examples: list) -> float:
        batch = self.backbone.encode([e.input_text for e in examples], [e.target_text for e in examples],
                                     max_input_tokens=self.config.max_input_tokens,
                                     max_target_tokens=self.max_new_tokens)
        self.method.train()
        self.backbone.model.train(self.config.dropout)
        with self.autocast:
            loss = self.backbone.loss(batch, self.method)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite loss ({loss.item()}) at step {self.step + 1}")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.train_tokens += int(batch.token_count) if hasattr(batch, "token_count") else 0
        return loss.item()

    def evaluate_point(self) -> dict:
        started = time.perf_counter()
        self.method.eval()
        self.backbone.model.eval()
        epoch = self.step / self.steps_per_epoch
        with self.autocast:
            dev_score, _ = evaluate(self.backbone, self.method, self.task, self.dev_examples,
                                    batch_size=self.config.eval_batch_size, max_new_tokens=self.max_new_tokens,
                                    max_input_tokens=self.config.max_input_tokens)
        point = {"step": self.step, "epoch": round(epoch, 4), **score_dict(dev_score)}
        # Each score is reported at its own best point: the strict score selects the checkpoint (the paper's rule),
        # the lenient one is tracked beside it, so a † run's lenient score is not read at its first evaluation.
        improved = self.best is None or point["score"] > self.best["dev"]["score"]
        lenient_improved = self.best_lenient is None or \
            point["lenient_score"] > self.best_lenient["dev"]["lenient_score"]
        if improved or lenient_improved:
            test = point
            if self.test_examples is not self.dev_examples:
                with self.autocast:
                    test_score, _ = evaluate(self.backbone, self.method, self.task, self.test_examples,
                                             batch_size=self.config.eval_batch_size, max_new_tokens=self.max_new_tokens,
                                             max_input_tokens=self.config.max_input_tokens)
                test = {"step": self.step, "epoch": point["epoch"], **score_dict(test_score)}
            selected = {"step": self.step, "epoch": point["epoch"], "dev": point, "test": test}
            if improved:
                self.best = selected
            if lenient_improved:
                self.best_lenient = selected
        self.history.append(point)
        self.eval_seconds += time.perf_counter() - started
        return point

    # -- checkpoints
    def save_checkpoint(self) -> None:
        folder = self.store.checkpoint_dir(self.run_hash)
        tensors = {"method": self.method.trainable_state(), "optimizer": self.optimizer.state_dict(),
                   "rng": torch.get_rng_state(),
                   "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}
        import io

        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        atomic_write_bytes(folder / "state.pt", buffer.getvalue())
        # The JSON goes last: a checkpoint counts only when its JSON names the step of its state.
        atomic_write_json(folder / "progress.json", {
            "step": self.step, "history": self.history, "loss_curve": self.loss_curve, "best": self.best,
            "best_lenient": self.best_lenient, "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds, "train_tokens": self.train_tokens,
            "pending_loss": self.pending_loss, "config": self.config.to_dict()})

    def try_resume(self) -> bool:
        import json

        folder = self.store.checkpoint_dir(self.run_hash)
        try:
            progress = json.loads((folder / "progress.json").read_text())
            tensors = torch.load(folder / "state.pt", map_location=self.device, weights_only=False)
        except (OSError, ValueError, RuntimeError, EOFError):
            return False
        self.method.load_trainable_state(tensors["method"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["rng"])
        if tensors.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(tensors["cuda_rng"])
        for key in ("step", "history", "loss_curve", "best", "train_seconds", "eval_seconds", "train_tokens",
                    "pending_loss"):
            setattr(self, key, progress[key])
        self.best_lenient = progress.get("best_lenient")
        return True

    # -- the loop
    def fit(self) -> dict:
        from tqdm.auto import tqdm

        resumed = self.try_resume()
        if not resumed:
            torch.manual_seed(self.config.seed)
        status, reason = "done", None
        bar = tqdm(total=self.total_steps, initial=self.step, desc=self.config.label(), leave=False, file=sys.stderr,
                   disable=not self.progress or tqdm_disabled(), dynamic_ncols=True)
        try:
            with deferred_interrupt() as interrupt:
                while self.step < self.total_steps:
                    started = time.perf_counter()
                    loss = self.train_step(self.batch_at(self.step))
                    self.step += 1
                    self.train_seconds += time.perf_counter() - started
                    self.pending_loss.append(loss)
                    if self.step % self.log_every == 0 or self.step == self.total_steps:
                        self.loss_curve.append([self.step, sum(self.pending_loss) / len(self.pending_loss)])
                        self.pending_loss = []
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    if self.is_eval_step(self.step):
                        point = self.evaluate_point()
                        bar.set_postfix(loss=f"{loss:.4f}", score=f"{point['score']:.1f}", refresh=False)
                        if self.step < self.total_steps:
                            self.save_checkpoint()
                    if interrupt["interrupted"]:
                        self.save_checkpoint()
                        raise KeyboardInterrupt
        except NonFiniteLoss as error:
            status, reason = "failed", str(error)
        finally:
            bar.close()
        return self.finish(status, reason, resumed)

    def finish(self, status: str, reason: str | None, resumed: bool) -> dict:
        prompt_path = None
        if status == "done":
            try:
                prompt = self.method.export_prompt().detach().float().cpu().contiguous()
            except NotImplementedError:
                prompt = None
            if prompt is not None:
                from safetensors.torch import save

                path = self.store.prompt_path(self.run_hash)
                atomic_write_bytes(path, save({"prompt": prompt}))
                prompt_path = str(path.relative_to(self.store.root))
        steps_done = max(self.step, 1)
        train_seconds = max(self.train_seconds, 1e-9)
        record = {
            "hash": self.run_hash,
            "config": self.config.to_dict(),
            "status": status,
            "reason": reason,
            "retryable": False,
            "resumed": resumed,
            "history": self.history,
            "loss_curve": self.loss_curve,
            "best": self.best,
            "best_lenient": self.best_lenient,
            "analysis": self.method.analysis_state() if status == "done" else {},
            "prompt_path": prompt_path,
            "data": {"train_examples": len(self.train_examples), "dev_examples": len(self.dev_examples),
                     "test_examples": len(self.test_examples), "max_new_tokens": self.max_new_tokens,
                     "truncated": self.truncation},
            "trainable_params": self.method.trainable_parameter_count(),
            "steps": self.step,
            "timing": {"train_seconds": round(self.train_seconds, 3), "eval_seconds": round(self.eval_seconds, 3),
                       "steps_per_s": round(steps_done / train_seconds, 4),
                       "examples_per_s": round(steps_done * self.config.batch_size / train_seconds, 3),
                       "tokens_per_s": round(self.train_tokens / train_seconds, 1)},
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "precision": {"dtype": self.precision, "reason": self.precision_reason,
                          "backbone_dtype": str(self.backbone.dtype).replace("torch.", "")},
            "provenance": {**git_state(), "code_version": CODE_VERSION, "versions": versions(),
                           "device": device_name(self.device),
                           "seed": self.config.seed, "started": self.started.isoformat(timespec="seconds"),
                           "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        }
        self.store.put(record)
        import shutil

        shutil.rmtree(self.store.checkpoint_dir(self.run_hash), ignore_errors=True)
        return record


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
