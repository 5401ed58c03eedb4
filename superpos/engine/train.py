"""One run, top to bottom: config -> data -> backbone -> method -> AdamW loop -> evaluations -> record.

The loop follows the paper (§4.4): AdamW with the method's lr and weight decay, no scheduler,
evaluation on the validation split every epoch (or every k steps) by greedy generation,
best-epoch selection. Everything needed to resume sits in a checkpoint written at every eval
point and on Ctrl-C; a resumed run on CPU ends with exactly the uninterrupted run's result.

A checkpoint is one folder published by one rename (see the store), and is checked against the run
(configuration, format, steps of its two files, the shape of every progress field, a checksum of both files'
contents, tensor shapes) before it is used: one that does not fit is set aside in one line and the run resumes
from an older one or starts over. A stored record is served only when its configuration hashes to its name; a
served record's leftovers (checkpoints, lock file) are removed when no other process holds the run. One process
trains a run at a time (the store's lock per run). A run keeps the method's trainable state at its best evaluation
point; the record's prompt, state and analysis are that point's, like its scores.
"""
from __future__ import annotations

import hashlib
import io
import json
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

from ..backbones import fast
from ..backbones.precision import resolve_precision
from ..paths import REPO_ROOT
from .config import CODE_VERSION, RunConfig, as_run_config
from .evaluate import evaluate, max_new_tokens_for
from .record import improves
from .reporting import check_report_to, make_reporter
from .store import ResultsStore, StoreError, atomic_write_bytes, is_run_hash, note, stable_hash

LOSS_POINTS = 400  # the loss curve keeps about this many points, whatever the run length
#: Layout of a checkpoint's files; a checkpoint of another format is set aside, never guessed at.
CHECKPOINT_FORMAT = 3
#: The trainer's mutable state kept in ``progress.json``, with the JSON types each field must have.
PROGRESS_FIELDS = {"step": int, "history": list, "loss_curve": list, "best": (dict, type(None)),
                   "best_lenient": (dict, type(None)), "best_predictions": (list, type(None)),
                   "train_seconds": (int, float), "eval_seconds": (int, float), "train_tokens": int,
                   "pending_loss": list}
BUSY_CHOICES = ("wait", "skip")
_CLEANED_STORES: set[str] = set()


class RunError(ValueError):
    """A run cannot start: a missing dependency run, an impossible combination."""


class NonFiniteLoss(RuntimeError):
    pass


# ---------------------------------------------------------------- public entry point
def run(config: RunConfig | dict, store: ResultsStore, *, retry_failed: bool = False, progress: bool = True,
        busy: str = "wait", report_to: str = "none") -> dict:
    """Run ``config`` unless the store already has it; return its record (``record["cached"]`` says which).

    Resumes from the newest checkpoint that fits the run. A non-finite loss ends the run with status
    ``failed``; any other exception propagates after the checkpoint is safe. Only one process trains a run:
    when another one holds it, ``busy="wait"`` waits for it (one line says so) and serves its record, and
    ``busy="skip"`` returns at once a ``status: "busy"`` stand-in that is not stored. ``report_to="tensorboard"``
    mirrors the loss curve and evaluation points to TensorBoard (:mod:`.reporting`); the record is the same.
    """
    if busy not in BUSY_CHOICES:
        raise ValueError(f"busy: must be one of {', '.join(BUSY_CHOICES)}, got {busy!r}")
    check_report_to(report_to)
    config = as_run_config(config).resolved()
    run_hash = config.run_hash()
    record = store.get(run_hash)
    if serves(record, retry_failed):
        store.clean_finished(run_hash)  # a kill between its record and its cleanup left its checkpoints, its lock
        return {**record, "cached": True}
    from ..backbones.precision import resolve_precision

    resolve_precision(config.dtype, resolve_device(config.device))  # a device or dtype it cannot run: before the store
    store.ensure_writable()
    clean_store_once(store)
    with store.lock(run_hash, wait=busy == "wait", label=config.label()) as lock:
        if not lock.held:
            return busy_record(config, run_hash, lock.holder())
        record = store.get(run_hash)  # the record may have appeared while this process waited for the lock
        if serves(record, retry_failed and not lock.waited):
            if store.checkpoint_dir(run_hash).is_dir():
                store.remove_checkpoints(run_hash)  # this process holds the lock: its leftovers are ours to clear
            return {**record, "cached": True}
        if record is not None and not names_its_run(record):
            store.set_aside_other_run(run_hash, "holds another run's configuration (it does not hash to its name)")
        source_prompts = load_source_prompts(config, store)
        trainer = Trainer(config, run_hash, store, source_prompts, progress=progress)
        trainer.reporter = make_reporter(report_to, store.root, run_hash)
        return {**trainer.fit(), "cached": False}


def serves(record: dict | None, retry_failed: bool) -> bool:
    """Whether a stored record answers the run: done, or failed and not to be retried, and of this run (its
    configuration hashes to the name it is stored under: :func:`names_its_run`)."""
    return record is not None and (record["status"] == "done" or not (retry_failed or record.get("retryable"))) \
        and names_its_run(record)


def names_its_run(record: dict) -> bool:
    """Whether ``record``'s configuration hashes, under this code, to the hash it is stored under (the store has
    checked that its ``hash`` field is its file's name). A record copied or saved under another run's name is not
    this run; nor is a record of an older ``CODE_VERSION`` (stored under its own, older hash, which no current
    configuration asks for): neither is served, neither is corrupt."""
    try:
        return RunConfig.from_dict(record["config"]).run_hash() == record["hash"]
    except Exception:  # noqa: BLE001 - a config this code cannot even resolve is certainly not this run's
        return False


def busy_record(config: RunConfig, run_hash: str, holder: str) -> dict:
    """What ``run(busy="skip")`` returns for a run another process is training (never stored)."""
    return {"hash": run_hash, "config": config.to_dict(), "status": "busy", "cached": False, "retryable": True,
            "reason": f"being trained by another process ({holder}); skipped", "history": [], "loss_curve": [],
            "best": None, "analysis": {}, "prompt_path": None, "state_path": None}


def clean_store_once(store: ResultsStore) -> None:
    """The store's stale leftovers are removed at the first run this process starts in it (best effort)."""
    key = str(store.root.resolve())
    if key in _CLEANED_STORES:
        return
    _CLEANED_STORES.add(key)
    try:
        store.clean_stale()
    except OSError as error:
        note(f"could not clean stale files in {store.root} ({error.strerror or error})")
    except StoreError as error:  # a damaged layout (locks/ a file): the run itself reports it when it meets it
        note(f"could not clean stale files in {store.root} ({error})")


def load_source_prompts(config: RunConfig, store: ResultsStore) -> torch.Tensor | None:
    """ATTEMPT's source prompts [k, n, d], from the stored prompts of finished source runs: each one's best
    evaluation point, or its last step (``source_point`` of the method config)."""
    if not config.sources:
        return None
    for source in config.sources:  # run hashes of this store, nothing else: never a path into another store
        if not is_run_hash(source):
            shown = repr(source) if len(repr(source)) <= 80 else repr(source)[:77] + "..."
            raise RunError(f"sources: {shown} is not a run hash (16 hex digits) of a finished source run in "
                           f"{store.root}")
    point = config.method_config.get("source_point", "best")
    return torch.stack([source_prompt(store, source, point) for source in config.sources])


def source_prompt(store: ResultsStore, source: str, point: str) -> torch.Tensor:
    """The ``[n, d]`` prompt of source run ``source`` at ``point`` ("best" or "last")."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    record = store.get(source)
    if record is None or record["status"] != "done" or not record.get("prompt_path"):
        raise RunError(f"sources: dependency run {source} is not finished in {store.root}; run the source tasks first "
                       "(a grid with attempt_sources does this)")
    try:
        tensors = load_file(str(store.root / record["prompt_path"]))
    except (OSError, SafetensorError) as error:
        raise RunError(f"sources: the prompt of source run {source} ({store.root / record['prompt_path']}) cannot be "
                       f"read ({error}); retrain it: remove {store.record_path(source)} and run it again") from None
    if not record.get("state_path"):  # older code: no best-point state, and the prompt file is the last step's
        if point == "last":
            return tensors["prompt"]
        raise RunError(f"sources: source run {source} was stored by older code without its best-point prompt; "
                       f"retrain it (remove {store.record_path(source)} and run it again, e.g. its grid) "
                       "or set source_point=last")
    return tensors["prompt"] if point == "best" else tensors["last"]


# ---------------------------------------------------------------- helpers
def tqdm_disabled() -> bool:
    """``TQDM_DISABLE=1`` silences the engine's bars even where ``progress=True`` is passed (tqdm's own
    environment default loses to an explicit ``disable=``); notebooks' kernels set it."""
    from ..paths import env_flag

    return env_flag("TQDM_DISABLE")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else the CPU; a CUDA device without a GPU is a one-line error."""
    from ..backbones.load import resolve_device as resolve

    try:
        return resolve(name)
    except ValueError as error:
        raise RunError(f"device: {error}") from None


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
    """One run's state, schedule, checkpoints and record. ``fit`` trains it alone; a packed group
    (``superpos.engine.packed``) drives several through the same pieces, on one shared ``backbone``."""

    def __init__(self, config: RunConfig, run_hash: str, store: ResultsStore, source_prompts, *, progress: bool = True,
                 backbone=None):
        from ..tasks import get_task

        self.config, self.run_hash, self.store, self.progress = config, run_hash, store, progress
        self.reporter = None  # a live view of the loss and evaluations (engine/reporting.py); not in the record
        self.given_backbone = backbone  # loaded by the caller (a packed group shares one); None: load our own
        self.packed_runs: int | None = None  # runs of the packed group this run trained in, when it was packed
        self.started = datetime.now(timezone.utc)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)

        # Data first: a bad task or a missing data folder fails before any model loads.
        self.task = get_task(config.task)
        splits = config.splits()  # the run seed draws the training sample; dev and test are the same for every seed
        self.train_examples, self.dev_examples, self.test_examples = splits.train, splits.dev, splits.test
        if not self.train_examples or not self.dev_examples:
            raise RunError(f"task: {config.task} has an empty training or evaluation split")

        # bf16 only where the device runs it natively (precision.py); full fine-tuning trains the backbone's own
        # weights, so they stay fp32 and bf16 enters through autocast.
        self.precision, self.precision_reason = resolve_precision(config.dtype, self.device)
        self.source_prompts = source_prompts
        self.build()
        self.truncation = truncation_rates(self.backbone, self.train_examples, self.dev_examples,
                                           config.max_input_tokens)
        self.max_new_tokens = max_new_tokens_for(self.backbone, self.task)

        steps_per_epoch = math.ceil(len(self.train_examples) / config.batch_size)
        self.steps_per_epoch = steps_per_epoch
        # As in Hugging Face's TrainingArguments: max_steps, when given, overrides epochs (the data cycles).
        self.total_steps = config.max_steps or config.epochs * steps_per_epoch
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
        self.best_predictions: list[str] | None = None  # test texts at the best strict point (example order)
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self.train_tokens = 0
        self.pending_loss: list[float] = []
        self.best_state: dict[str, torch.Tensor] | None = None  # the method's state at ``best``, on CPU

    def layers_note(self) -> dict:
        """What the record says of the fast path (backbones/fast.py) beyond the dtype: ``decoder_layers`` where the
        fast loss compiled its layers, or tried; ``generation_prefill: "fast path"`` where it computes greedy
        generation's first step (evaluation runs in eval mode, where dropout does not act). Empty where neither
        applies (fp32, CUDA, T5)."""
        backbone = self.backbone
        if backbone.kind != "causal":
            return {}
        note = {}
        if backbone.fast_loss and fast.supported(backbone.model, training=True):
            state = fast.layers_state(backbone.dtype, backbone.device)
            if state != "eager":
                note["decoder_layers"] = state
        if backbone.fast_first_step():
            note["generation_prefill"] = "fast path"
        return note

    def build(self) -> None:
        """Backbone, method and optimizer as a fresh run starts them (seeded, so always the same)."""
        from ..backbones import load_backbone
        from ..methods import METHODS, build_method

        config = self.config
        torch.manual_seed(config.seed)
        self.backbone = self.given_backbone if self.given_backbone is not None else load_backbone(
            config.backbone, dropout=config.dropout, dropout_rate=config.dropout_rate, device=str(self.device),
            dtype=self.backbone_dtype())
        method_config = METHODS[config.method][0].from_dict(config.method_config)
        self.method = build_method(method_config, self.backbone, label_words=self.task.label_words,
                                   source_prompts=self.source_prompts, seed=config.seed).to(self.device)
        # On a GPU the fused AdamW: one kernel per step instead of a dozen, for a prompt of a few thousand values
        # (a packed group steps R optimizers each step). On a CPU PyTorch's default, so CPU results stay as they were.
        self.optimizer = torch.optim.AdamW(self.method.param_groups(),
                                           fused=True if self.device.type == "cuda" else None)

    def backbone_dtype(self) -> str:
        """The frozen backbone's dtype: the run's precision, fp32 for full fine-tuning (it trains those weights)."""
        return "fp32" if self.config.method == "full" else self.precision

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
    def encode_batch(self, examples: list):
        """The training ``Batch`` of ``examples``: inputs cut at this run's ``max_input_tokens``, with targets."""
        return self.backbone.encode([e.input_text for e in examples], [e.target_text for e in examples],
                                    max_input_tokens=self.config.max_input_tokens,
                                    max_target_tokens=self.max_new_tokens)

    def train_step(self, examples: list) -> float:
        batch = self.encode_batch(examples)
        self.method.train()
        self.backbone.model.train(self.config.dropout)
        with self.autocast:
            loss = self.backbone.loss(batch, self.method)
        if not torch.isfinite(loss):
            raise self.non_finite(loss.item())
        loss.backward()
        self.optimizer_step(batch)
        return loss.item()

    def non_finite(self, loss: float) -> NonFiniteLoss:
        return NonFiniteLoss(f"non-finite loss ({loss}) at step {self.step + 1}")

    def optimizer_step(self, batch) -> None:
        """Apply the gradients the step's backward left on the method, and count the batch's tokens."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.train_tokens += int(batch.token_count)

    def end_step(self, loss: float, seconds: float) -> None:
        """Count one finished optimizer step: its time, its loss into the loss curve."""
        self.step += 1
        self.train_seconds += seconds
        self.pending_loss.append(loss)
        if self.step % self.log_every == 0 or self.step == self.total_steps:
            self.loss_curve.append([self.step, sum(self.pending_loss) / len(self.pending_loss)])
            self.pending_loss = []
            if self.reporter is not None:
                self.reporter.loss(*self.loss_curve[-1])

    # -- evaluation points
    def eval_options(self) -> dict:
        """How this run generates at evaluation (``evaluate``'s keyword arguments)."""
        return {"batch_size": self.config.eval_batch_size, "max_new_tokens": self.max_new_tokens,
                "max_input_tokens": self.config.max_input_tokens}

    def evaluate_point(self) -> dict:
        started = time.perf_counter()
        self.method.eval()
        self.backbone.model.eval()
        with self.autocast:
            dev_score, dev_predictions = evaluate(self.backbone, self.method, self.task, self.dev_examples,
                                                  **self.eval_options())
        point, wants_test = self.dev_point(dev_score)
        test_score = test_predictions = None
        if wants_test:
            with self.autocast:
                test_score, test_predictions = evaluate(self.backbone, self.method, self.task, self.test_examples,
                                                        **self.eval_options())
        self.settle_point(point, wants_test, test_score, test_predictions if wants_test else dev_predictions)
        self.eval_seconds += time.perf_counter() - started
        return point

    def dev_point(self, dev_score) -> tuple[dict, bool]:
        """This step's evaluation point from its dev score, and whether the test split must be scored too
        (only at a new best point, and only when it is not the dev split)."""
        point = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4), **dev_score.to_dict()}
        return point, any(self.improves(point)) and self.test_examples is not self.dev_examples

    def improves(self, point: dict) -> tuple[bool, bool]:
        """Whether ``point`` beats the best strict and the best lenient point so far (``record.improves``).

        Each score is reported at its own best point: the strict score selects the checkpoint (the paper's rule),
        the lenient one is tracked beside it, so a † run's lenient score is not read at its first evaluation.
        """
        return (improves(None if self.best is None else self.best["dev"], point),
                improves(None if self.best_lenient is None else self.best_lenient["dev"], point, lenient=True))

    def settle_point(self, point: dict, tested: bool, test_score, test_predictions: list[str]) -> None:
        """Keep ``point`` in the history and, where it improves, as the best point (with ``test_score`` when
        ``tested``) and its state; ``test_predictions`` are the texts generated for the test examples (the dev
        ones where dev is test), kept at the strict-best point for paired, example-level comparisons."""
        improved, lenient_improved = self.improves(point)
        if improved or lenient_improved:
            test = {"step": self.step, "epoch": point["epoch"], **test_score.to_dict()} if tested else point
            selected = {"step": self.step, "epoch": point["epoch"], "dev": point, "test": test}
            if improved:
                self.best = selected
                self.best_predictions = list(test_predictions)
                self.save_best_state()
            if lenient_improved:
                self.best_lenient = selected
        self.history.append(point)

    # -- the best point's state
    def save_best_state(self) -> None:
        """Keep a CPU copy of the method's trainable state at this new best point; later checkpoints carry it
        and the finished run writes it to ``states/<hash>.safetensors``. Full fine-tuning keeps none (its
        state is the whole backbone: ``keeps_best_state`` in the method)."""
        if self.method.keeps_best_state:
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.method.trainable_state().items()}

    # -- checkpoints
    def eval_buffers(self) -> dict[str, torch.Tensor]:
        """The method's non-persistent buffers (statistics of evaluation passes, e.g. ATTEMPT's mean
        attention): not part of its state, but of a checkpoint, so a resumed run's analysis is the same."""
        persistent = set(self.method.state_dict())
        return {name: value.detach().cpu().clone() for name, value in self.method.named_buffers()
                if name not in persistent}

    def save_checkpoint(self) -> None:
        """Write the trainer's whole mutable state as the checkpoint of this step (one atomic unit)."""
        tensors = {"format": CHECKPOINT_FORMAT, "hash": self.run_hash, "step": self.step,
                   "method": self.method.trainable_state(), "buffers": self.eval_buffers(),
                   "best_state": self.best_state, "optimizer": self.optimizer.state_dict(),
                   "rng": torch.get_rng_state(),
                   "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        progress = {key: getattr(self, key) for key in PROGRESS_FIELDS}
        progress.update({"format": CHECKPOINT_FORMAT, "hash": self.run_hash, "config": self.config.to_dict()})
        state = buffer.getvalue()
        progress["checksum"] = checkpoint_checksum(progress, state)
        self.store.write_checkpoint(self.run_hash, self.step, {
            "state.pt": state,
            "progress.json": (json.dumps(progress, indent=1, sort_keys=True) + "\n").encode()})

    def resume(self) -> bool:
        """Load the newest checkpoint that fits this run; set aside, in one line each, those that do not.

        True when the run resumed; False when it starts over (the trainer is then as freshly built).
        """
        self.store.clean_checkpoint_leftovers(self.run_hash)  # this process holds the run's lock
        self.store.prepare_checkpoints(self.run_hash)  # files where folders should be: set aside, one line each
        self.drop_old_layout()
        for step, folder in self.store.checkpoints(self.run_hash):
            try:
                progress = json.loads((folder / "progress.json").read_text())
                state = (folder / "state.pt").read_bytes()
                tensors = torch.load(io.BytesIO(state), map_location="cpu", weights_only=True)
                problem = self.checkpoint_problem(step, progress, tensors, state)
            except Exception as error:  # a damaged file fails in many ways; each one means "unusable"
                problem = f"unreadable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            if problem is None:
                try:
                    self.load_checkpoint(progress, tensors)
                    return True
                except Exception as error:  # passed the checks but did not load: back to a fresh start
                    problem = f"does not load: {type(error).__name__}: {error}"
                    self.build()
            self.store.reject_checkpoint(folder, problem)
        return False

    def drop_old_layout(self) -> None:
        """A checkpoint of older code (``state.pt`` and ``progress.json`` written one after the other, no step
        in the state) cannot be checked for a torn write: it is removed and the run starts over."""
        folder = self.store.checkpoint_dir(self.run_hash)
        old = [folder / name for name in ("state.pt", "progress.json") if (folder / name).is_file()]
        if old:
            note(f"checkpoint {folder.name} was written by older code and cannot be checked; the run starts over")
            for path in old:
                path.unlink(missing_ok=True)

    def checkpoint_problem(self, step: int, progress: Any, tensors: Any, state: bytes | None = None) -> str | None:
        """Why a checkpoint (its ``progress.json`` and ``state.pt``, whose bytes are ``state``) does not fit this
        run, or None: its format, run and configuration, the shape of every field of its progress
        (:func:`progress_problem`), its steps, its checksum (when ``state`` is given), its tensors."""
        if not isinstance(progress, dict) or not isinstance(tensors, dict):
            return "not a checkpoint"
        if progress.get("format") != CHECKPOINT_FORMAT or tensors.get("format") != CHECKPOINT_FORMAT:
            return "another checkpoint format"
        if progress.get("hash") != self.run_hash or tensors.get("hash") != self.run_hash \
                or progress.get("config") != self.config.to_dict():
            return "it belongs to another run configuration"
        for key, kinds in PROGRESS_FIELDS.items():
            if not isinstance(progress.get(key), kinds) or isinstance(progress.get(key), bool):
                return f"progress.json has no valid {key!r}"
        if not progress["step"] == tensors.get("step") == step:
            return f"its files are of steps {progress['step']} and {tensors.get('step')}, its name says {step}"
        if not 0 < step <= self.total_steps:
            return f"step {step} is outside this run's {self.total_steps} steps"
        problem = progress_problem(progress, self.log_every, self.total_steps)
        if problem is not None:
            return f"progress.json: {problem}"
        # (a checkpoint written before checksums were, without one, is checked by all the rest)
        if state is not None and "checksum" in progress and progress["checksum"] != checkpoint_checksum(progress,
                                                                                                       state):
            return "its checksum does not match its contents (edited or damaged)"
        own = self.method.trainable_state()
        problem = tensor_dict_problem(tensors.get("method"), own, "method state")
        problem = problem or tensor_dict_problem(tensors.get("buffers"), self.eval_buffers(), "evaluation buffers")
        if self.method.keeps_best_state and (progress["best"] is None) != (tensors.get("best_state") is None):
            problem = problem or "its best point and best state disagree"
        if tensors.get("best_state") is not None:
            problem = problem or tensor_dict_problem(tensors["best_state"], own, "best state")
        return problem or optimizer_problem(tensors.get("optimizer"), self.optimizer)

    def load_checkpoint(self, progress: dict, tensors: dict) -> None:
        """Put a checked checkpoint's state into the method, the optimizer, the RNGs and the trainer."""
        self.method.load_trainable_state(tensors["method"])
        for name, value in tensors["buffers"].items():
            self.method.get_buffer(name).copy_(value)
        self.optimizer.load_state_dict(tensors["optimizer"])
        torch.set_rng_state(tensors["rng"])
        if tensors.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(tensors["cuda_rng"])
        for key in PROGRESS_FIELDS:
            setattr(self, key, progress[key])
        self.best_state = tensors["best_state"]

    # -- the loop
    def fit(self) -> dict:
        from tqdm.auto import tqdm

        resumed = self.resume()
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
                    self.end_step(loss, time.perf_counter() - started)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                    if self.is_eval_step(self.step):
                        point = self.evaluate_point()
                        if self.reporter is not None:
                            self.reporter.evaluation(point)
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
            if self.reporter is not None:
                self.reporter.close()
        return self.finish(status, reason, resumed)

    def finish(self, status: str, reason: str | None, resumed: bool) -> dict:
        """Write the finished run: best-point state, prompt, then the record; then drop its checkpoints."""
        prompt_path = state_path = None
        analysis: dict = {}
        if status == "done":
            last_prompt = self.exported_prompt()
            if self.best_state is not None:  # the record's scores are the best point's: so are its prompt and state
                self.method.load_trainable_state(self.best_state)
                state_path = self.write_file(self.store.state_path(self.run_hash),
                                             self.method.state_file_bytes(self.best_state))
            prompt = self.exported_prompt()
            if prompt is not None:
                from safetensors.torch import save

                prompt_path = self.write_file(self.store.prompt_path(self.run_hash),
                                              save({"prompt": prompt, "last": last_prompt}))
            analysis = self.method.analysis_state()
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
            # the texts generated for data.test_examples at the best strict point, in their order (fingerprint.test)
            "test_predictions": self.best_predictions,
            "analysis": analysis,
            "prompt_path": prompt_path,
            "state_path": state_path,
            "data": {"train_examples": len(self.train_examples), "dev_examples": len(self.dev_examples),
                     "test_examples": len(self.test_examples), "max_new_tokens": self.max_new_tokens,
                     "truncated": self.truncation, "fingerprint": examples_fingerprint(self.dev_examples,
                                                                                       self.test_examples)},
            "trainable_params": self.method.trainable_parameter_count(),
            "steps": self.step,
            "timing": {"train_seconds": round(self.train_seconds, 3), "eval_seconds": round(self.eval_seconds, 3),
                       "steps_per_s": round(steps_done / train_seconds, 4),
                       "examples_per_s": round(steps_done * self.config.batch_size / train_seconds, 3),
                       "tokens_per_s": round(self.train_tokens / train_seconds, 1)},
            "peak_memory_mb": round(peak_memory_mb(self.device), 1),
            "precision": {"dtype": self.precision, "reason": self.precision_reason,
                          "backbone_dtype": str(self.backbone.dtype).replace("torch.", ""), **self.layers_note()},
            "provenance": {**git_state(), "code_version": CODE_VERSION, "versions": versions(),
                           "device": device_name(self.device),
                           **({"packed_runs": self.packed_runs} if self.packed_runs else {}),
                           "seed": self.config.seed, "started": self.started.isoformat(timespec="seconds"),
                           "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        }
        self.store.put(record)
        self.store.remove_checkpoints(self.run_hash)
        return record

    def exported_prompt(self) -> torch.Tensor | None:
        """The method's prompt ``[n, d]`` as a contiguous CPU float32 tensor; None when it has no single prompt."""
        try:
            return self.method.export_prompt().detach().float().cpu().contiguous()
        except NotImplementedError:
            return None

    def write_file(self, path, data: bytes) -> str:
        """Write ``data`` atomically to ``path`` in the store; return the path relative to the store."""
        atomic_write_bytes(path, data)
        return str(path.relative_to(self.store.root))


def checkpoint_checksum(progress: dict, state: bytes) -> str:
    """SHA-256 over a checkpoint's ``state.pt`` bytes and its ``progress.json`` fields (but ``checksum``), in
    canonical JSON: written into ``progress.json``, so an edited value in either file is caught on resume. (JSON
    numbers read back as the same floats, so the canonical text of what was written and what is read is one.)"""
    body = json.dumps({key: value for key, value in progress.items() if key != "checksum"}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(hashlib.sha256(state).digest() + body.encode()).hexdigest()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def point_problem(point: Any, what: str) -> str | None:
    """Why ``point`` is not an evaluation point as the trainer writes them (``dev_point``), or None."""
    if not isinstance(point, dict):
        return f"{what} is not an evaluation point"
    if not _count(point.get("step")) or point["step"] < 1:
        return f"{what} has no valid 'step'"
    for key in ("epoch", "score", "lenient_score", "invalid_rate"):
        if not _number(point.get(key)):
            return f"{what} has no valid {key!r}"
    if not isinstance(point.get("dagger"), bool):
        return f"{what} has no valid 'dagger'"
    for key in ("metrics", "lenient"):
        if not isinstance(point.get(key), dict) or not all(_number(v) for v in point[key].values()):
            return f"{what} has no valid {key!r}"
    return None


def progress_problem(progress: dict, log_every: int, total_steps: int) -> str | None:
    """Why a checkpoint's ``progress`` (its fields' types already checked) is not what the trainer writes at its
    step, or None: every evaluation point an evaluation point, in step order and before the step; the best points
    among them; the loss curve's ``[step, loss]`` pairs, one per ``log_every`` steps, with ``pending_loss`` the
    finite losses since its last one; times and counts non-negative."""
    step = progress["step"]
    steps = []
    for index, point in enumerate(progress["history"]):
        problem = point_problem(point, f"history[{index}]")
        if problem is not None:
            return problem
        steps.append(point["step"])
    if steps != sorted(set(steps)) or (steps and steps[-1] > step):
        return "the history's steps are out of order or past the checkpoint's step"
    for key in ("best", "best_lenient"):
        best = progress[key]
        if best is None:
            if steps:
                return f"{key!r} is missing though the history has evaluation points"
            continue
        if not _count(best.get("step")) or not _number(best.get("epoch")):
            return f"{key!r} has no valid step or epoch"
        problem = point_problem(best.get("dev"), f"{key}.dev") or point_problem(best.get("test"), f"{key}.test")
        if problem is not None:
            return problem
        if best["step"] not in steps or best["dev"]["step"] != best["step"]:
            return f"{key!r} is not one of the history's evaluation points"
    predictions = progress["best_predictions"]
    if (predictions is None) != (progress["best"] is None) or \
            (predictions is not None and not all(isinstance(text, str) for text in predictions)):
        return "'best_predictions' are not the best point's texts"
    curve = progress["loss_curve"]
    logged = list(range(log_every, step + 1, log_every))  # end_step's points up to this step (and the last step)
    if step == total_steps and step % log_every:
        logged.append(step)
    if len(curve) != len(logged):
        return f"the loss curve has {len(curve)} points, not the {len(logged)} of {step} steps"
    for index, (pair, at) in enumerate(zip(curve, logged)):
        if not (isinstance(pair, list) and len(pair) == 2 and _count(pair[0]) and _number(pair[1])
                and math.isfinite(pair[1]) and pair[0] == at):
            return f"loss_curve[{index}] is not a [step, loss] pair of this run"
    pending = progress["pending_loss"]
    unlogged = 0 if step == total_steps else step % log_every
    if len(pending) != unlogged or not all(_number(v) and math.isfinite(v) for v in pending):
        return "'pending_loss' is not the finite losses since the loss curve's last point"
    for key in ("train_seconds", "eval_seconds"):
        if not (math.isfinite(progress[key]) and progress[key] >= 0):
            return f"{key!r} is not a non-negative number"
    if progress["train_tokens"] < 0:
        return "'train_tokens' is negative"
    return None


def examples_fingerprint(dev: list, test: list) -> dict[str, str]:
    """Hashes of the dev and the test examples' ids (and targets): two records with equal fingerprints were
    selected and scored on the same examples, so they compare example by example."""
    def digest(examples: list) -> str:
        return stable_hash([[example.uid, example.target_text] for example in examples])

    return {"dev": digest(dev), "test": digest(test)}


def tensor_dict_problem(saved: Any, own: dict[str, torch.Tensor], what: str) -> str | None:
    """Why ``saved`` is not a state with ``own``'s names, shapes and dtypes (None when it is)."""
    if not isinstance(saved, dict) or set(saved) != set(own):
        return f"its {what} names other tensors"
    for key, value in saved.items():
        if not isinstance(value, torch.Tensor) or value.shape != own[key].shape or value.dtype != own[key].dtype:
            return f"its {what} {key!r} does not fit (different config or backbone?)"
    return None


def optimizer_problem(saved: Any, optimizer: torch.optim.Optimizer) -> str | None:
    """Why ``saved`` is not a state of ``optimizer`` (same groups, same parameter shapes), or None."""
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict) \
            or len(groups) != len(optimizer.param_groups):
        return "its optimizer state does not fit"
    shapes = {}
    for group, own in zip(groups, optimizer.param_groups):
        if not isinstance(group, dict) or len(group.get("params", ())) != len(own["params"]):
            return "its optimizer state does not fit"
        shapes.update({index: param.shape for index, param in zip(group["params"], own["params"])})
    for index, state in saved["state"].items():
        if index not in shapes or not isinstance(state, dict):
            return "its optimizer state does not fit"
        for key in ("exp_avg", "exp_avg_sq"):
            if not isinstance(state.get(key), torch.Tensor) or state[key].shape != shapes[index]:
                return "its optimizer state does not fit"
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # The kernel set (AVX2, AVX512, ...) is named: runs on another one round otherwise and part (docs/SPEED.md, §0).
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({platform.processor() or platform.machine()}, {kernels} kernels, {torch.get_num_threads()} threads)"
