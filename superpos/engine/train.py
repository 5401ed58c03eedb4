"""One run, top to bottom: config -> data -> backbone -> method -> AdamW loop -> evaluations -> record.

The loop follows the paper (§4.4): AdamW with the method's lr and weight decay, no scheduler,
evaluation on the validation split every epoch (or every k steps) by greedy generation,
best-epoch selection. Everything needed to resume sits in a checkpoint written at every eval
point and on Ctrl-C; a resumed run on CPU ends with exactly the uninterrupted run's result.

A checkpoint is checked against the run before it is used (:mod:`.checkpoint`). A stored record is served only
when its configuration hashes to its name; a served record's leftovers (checkpoints, lock file) are removed when no
other process holds the run. One process trains a run at a time (the store's lock per run). A run keeps the
method's trainable state at its best evaluation point; the record's prompt, state and analysis are that point's,
like its scores (:mod:`.record` builds it).
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timezone

import torch

from ..backbones import resolve_device
from ..backbones.precision import resolve_precision
from .checkpoint import Checkpoints
from .config import RunConfig, as_run_config
from .console import deferred_interrupt, tqdm_disabled
from .evaluate import evaluate, max_new_tokens_for
from .files import StoreError, atomic_write_bytes, note
from .provenance import truncation_rates
from .record import busy_record, finished_record, improves
from .reporting import check_report_to, make_reporter
from .store import ResultsStore, is_run_hash

LOSS_POINTS = 400  # the loss curve keeps about this many points, whatever the run length
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


# ---------------------------------------------------------------- the trainer
class Trainer(Checkpoints):
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
        record = finished_record(self, status, reason, resumed, prompt_path=prompt_path, state_path=state_path,
                                 analysis=analysis)
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

