"""Packed training: R compatible runs share one frozen backbone, one forward and one backward per step.

Runs are compatible when they would load the same frozen backbone: the same backbone, device, precision and
dropout setting, any methods, configs, tasks and seeds. Full fine-tuning trains the backbone itself, so it always
runs alone. Each step concatenates the runs' own batches (``Batch.concat``); each run's method turns its own rows
(``MethodRows``: its prompt, ATTEMPT's input-dependent prompt, EPT's prompt and input update); the backbone runs
once over all rows; each run's loss is the mean over its own target tokens, as alone. The losses are summed before
the backward: the backbone is frozen and rows never mix, so each run's gradient is its own loss's. Each run then
steps its own optimizer.

Everything else stays each run's own, in its :class:`~superpos.engine.train.Trainer`: data order, optimizer and its
state, learning rate and weight decay, evaluation schedule, best point, checkpoints and record. Evaluation is
packed the same way: the runs whose evaluation point it is generate together (``evaluate_many``).

What packing changes in a run: float rounding (other batch shapes, other summation orders; tests/test_packing.py
states the tolerance), and with dropout on, the masks (the group draws them from one random stream), so a packed
run with dropout is another sample of the same run, not its copy. Its record says ``provenance.packed_runs``.

A group takes each run's lock without waiting: a run another process holds is left out of the group and run
alone afterwards (waiting for it, as ``run`` does). A non-finite loss fails that run only; the others go on.
Every run of the group checkpoints when any of them evaluates, ends or is interrupted, and a killed group resumes
all its runs at the newest step they all saved: the same runs share each step again, so on CPU the resumed group
ends bit for bit where the uninterrupted one would have. A full disk stops the group as it stops a run alone.

Why two loops, :meth:`PackedGroup.fit` here and :meth:`Trainer.fit` alone: both drive the same pieces of the
Trainer (``batch_at``, ``end_step``, ``dev_point``/``settle_point``, checkpoints, ``finish``), but their steps
differ. The packed step reduces R runs' token losses in one forward (``token_losses`` and :func:`run_means`),
another summation than the alone loss (``Backbone.loss``); a run alone stepped through this loop would round
otherwise than every run alone before it, so records of one configuration would stop reproducing each other.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time

import torch

from ..config import require
from .checkpoint import rng_state, set_rng_state
from .config import RunConfig, as_run_config
from .evaluate import EvalJob, evaluate_many
from .files import is_storage_error
from .store import ResultsStore

#: Group size when ``pack`` is automatic, on CUDA. On CPU packing stays off: there the per-example cost of a
#: step is flat from batch 8 to 64 (docs/SPEED.md), so more rows per step buy nothing.
CUDA_PACK = 8


def check_pack(pack: int | None) -> None:
    require(pack is None or (isinstance(pack, int) and not isinstance(pack, bool) and pack >= 1), "pack",
            f"must be an integer >= 1 (1: every run alone) or None (automatic), got {pack!r}")


def pack_key(config: RunConfig) -> tuple | None:
    """What runs packed together must share (they load one backbone); None for a run that must run alone."""
    from ..backbones import BackboneError, resolve_device
    from ..backbones.precision import resolve_precision

    if config.method == "full":  # it trains the backbone's own weights: no other run may share them
        return None
    try:
        device = resolve_device(config.device)
    except BackboneError:  # the run fails alone, with its own message
        return None
    precision, _ = resolve_precision(config.dtype, device)
    return (config.backbone, str(device), precision, config.dropout, config.dropout_rate if config.dropout else None)


def group_size(key: tuple | None, pack: int | None) -> int:
    """Runs per group for runs of ``key``: ``pack`` when given; automatic: ``CUDA_PACK`` on CUDA, else 1."""
    if key is None:
        return 1
    return pack if pack is not None else (CUDA_PACK if key[1].startswith("cuda") else 1)


def plan_units(configs: list[RunConfig], pack: int | None) -> list[list[int]]:
    """Indices of ``configs`` in the units they run in, in running order: packed groups and single runs.

    A run joins a later wave than the runs of ``configs`` it depends on (ATTEMPT's sources), so a group never
    holds a run and its source. Within a wave, compatible runs fill groups of :func:`group_size` in order.
    """
    wave_of: dict[str, int] = {}
    waves: list[int] = []
    for config in configs:
        wave = 1 + max((wave_of[source] for source in config.sources if source in wave_of), default=-1)
        wave_of.setdefault(config.run_hash(), wave)
        waves.append(wave)
    units: list[list[int]] = []
    for wave in sorted(set(waves)):
        filling: dict[tuple, list[int]] = {}
        for index in (i for i, w in enumerate(waves) if w == wave):
            key = pack_key(configs[index])
            size = group_size(key, pack)
            if size <= 1:
                units.append([index])
                continue
            if key not in filling:
                filling[key] = []
                units.append(filling[key])
            filling[key].append(index)
            if len(filling[key]) == size:
                del filling[key]
    return units


# ---------------------------------------------------------------- a group, from configs to records
def run_group(configs: list[RunConfig | dict], store: ResultsStore, *, retry_failed: bool = False,
              progress: bool = True) -> list[dict]:
    """Train ``configs`` (compatible runs, see :func:`pack_key`) as one packed group; their records, in order.

    As :func:`~superpos.engine.train.run` for each: a stored record is served (``cached``); a run another
    process holds is trained alone afterwards; a run that cannot start is recorded as failed, the others go on.
    """
    from .train import clean_store_once, serves

    configs = [as_run_config(config).resolved() for config in configs]
    keys = {pack_key(config) for config in configs}
    require(None not in keys, "pack", "full fine-tuning trains the backbone's own weights: it runs alone, never packed")
    require(len(keys) <= 1, "pack", "runs packed together must share backbone, device, dtype and dropout setting")
    hashes = [config.run_hash() for config in configs]
    records: dict[str, dict] = {}
    held_elsewhere: list[RunConfig] = []
    store.ensure_writable()
    clean_store_once(store)
    with contextlib.ExitStack() as locks:
        members = []
        for run_hash, config in dict(zip(hashes, configs)).items():
            if serves(record := store.get(run_hash), retry_failed):
                store.clean_finished(run_hash)  # a kill between its record and its cleanup left its leftovers
                records[run_hash] = {**record, "cached": True}
                continue
            lock = locks.enter_context(store.lock(run_hash, wait=False, label=config.label()))
            if not lock.held:
                held_elsewhere.append(config)
            elif serves(record := store.get(run_hash), retry_failed):  # it appeared before we took the lock
                records[run_hash] = {**record, "cached": True}
            else:
                members.append(config)
        records.update(train_members(members, store, progress))
    for config in held_elsewhere:
        records[config.run_hash()] = run_alone(config, store, retry_failed, progress)
    return [records[run_hash] for run_hash in hashes]


def run_alone(config: RunConfig, store: ResultsStore, retry_failed: bool, progress: bool) -> dict:
    """``run`` for one run; a run that raises is recorded as failed (retryable), as ``run_configs`` records it."""
    from .record import failed_record
    from .train import run

    try:
        return run(config, store, retry_failed=retry_failed, progress=progress)
    except Exception as error:
        store.put(record := failed_record(config, error))
        return record


def train_members(configs: list[RunConfig], store: ResultsStore, progress: bool) -> dict[str, dict]:
    """Build a trainer per run (the first loads the backbone, the others share it) and train them packed; a run
    that cannot start is recorded as failed. One run left to train still trains as a group (of one): after a kill,
    a group whose other runs had finished goes on exactly as it would have."""
    from .record import failed_record
    from .train import Trainer, load_source_prompts

    records: dict[str, dict] = {}
    trainers: list[Trainer] = []
    for config in configs:
        try:
            shared = trainers[0].backbone if trainers else None
            trainers.append(Trainer(config, config.run_hash(), store, load_source_prompts(config, store),
                                    progress=progress, backbone=shared))
        except Exception as error:  # this run cannot start; the group goes on without it
            if is_storage_error(error):  # a full disk stops the grid in one line; the same command resumes
                raise
            records[config.run_hash()] = failed_record(config, error)
            store.put(records[config.run_hash()])
    finished: dict[str, dict] = {}
    try:
        if trainers:
            group = PackedGroup(trainers, progress=progress)
            finished = group.records  # filled as runs finish, so an error below keeps the finished ones
            group.fit()
    except Exception as error:  # not a run's own failure (a NaN is): each unfinished run fails, retryably
        if is_storage_error(error):  # a full disk: the unfinished runs keep their checkpoints and resume
            raise
        for trainer in trainers:
            if trainer.run_hash not in finished:
                finished[trainer.run_hash] = failed_record(trainer.config, error)
                store.put(finished[trainer.run_hash])
    return {**records, **finished}


# ---------------------------------------------------------------- the packed loop
class PackedGroup:
    """Trainers of compatible runs on one shared backbone, stepped together until each is done."""

    def __init__(self, trainers: list, *, progress: bool = True):
        self.trainers, self.progress = list(trainers), progress
        self.backbone = self.trainers[0].backbone
        if any(trainer.backbone is not self.backbone for trainer in self.trainers):
            raise ValueError("PackedGroup: the trainers must share one backbone (Trainer(..., backbone=...))")
        for trainer in self.trainers:
            trainer.packed_runs = len(self.trainers)
        self.records: dict[str, dict] = {}
        self.resumed: dict[str, bool] = {}

    def resume(self) -> None:
        """Every run from its checkpoint of the newest step that all of them saved (:meth:`save`), so the group
        goes on as it would have without the kill: the same runs side by side at each step, the same random
        stream (dropout), from that checkpoint. A group that starts fresh seeds it with its first run's seed.
        Where a run's checkpoint of that step is unusable (set aside), the runs go on from different steps: the
        same training, up to rounding."""
        newest = [(trainer.prepare_resume() or [0])[0] for trainer in self.trainers]
        common = min(newest)
        lead = None
        for trainer in self.trainers:
            self.resumed[trainer.run_hash] = trainer.resume(at_most=common, prepared=True)
            if self.resumed[trainer.run_hash] and (lead is None or trainer.step > lead[0]):
                lead = (trainer.step, rng_state(trainer.device))
        if lead is None:
            torch.manual_seed(self.trainers[0].config.seed)
        else:
            set_rng_state(lead[1], self.trainers[0].device)  # one backbone, so one device for every run

    def save(self, trainers: list) -> None:
        """Checkpoint every run of ``trainers`` at its step, then drop their other checkpoints: a kill part-way
        leaves each run its checkpoint of the previous common step."""
        for trainer in trainers:
            trainer.save_checkpoint(keep_older=True)
        for trainer in trainers:
            trainer.store.keep_only_checkpoint(trainer.run_hash, trainer.step)

    def fit(self) -> dict[str, dict]:
        """Train every run to its end; their records by run hash (also in ``self.records`` as they finish)."""
        from tqdm import tqdm  # the plain bar: tqdm.auto wants ipywidgets in a notebook and warns without it

        from .console import deferred_interrupt, tqdm_disabled

        self.resume()
        active = list(self.trainers)
        bar = tqdm(total=sum(t.total_steps for t in active), initial=sum(t.step for t in active),
                   desc=f"{len(active)} runs packed", leave=False, file=sys.stderr, dynamic_ncols=True,
                   disable=not self.progress or tqdm_disabled())
        try:
            with deferred_interrupt() as interrupt:
                active = self.retire(active)
                while active:
                    failures = self.train_step(active)
                    bar.update(len(active) - len(failures))
                    for trainer, reason in failures.items():
                        self.finish(trainer, "failed", reason)
                    active = [trainer for trainer in active if trainer not in failures]
                    due = [trainer for trainer in active if trainer.is_eval_step(trainer.step)]
                    if due:
                        self.evaluate(due)
                    # every run saves when any evaluates, ends or is interrupted, so all share their newest step
                    if due or interrupt["interrupted"] or any(t.step >= t.total_steps for t in active):
                        self.save(active)
                    active = self.retire(active)
                    if interrupt["interrupted"]:
                        raise KeyboardInterrupt
        finally:
            bar.close()
        return dict(self.records)

    def retire(self, active: list) -> list:
        """Finish the runs that reached their last step; the others stay."""
        for trainer in active:
            if trainer.step >= trainer.total_steps:
                self.finish(trainer, "done", None)
        return [trainer for trainer in active if trainer.step < trainer.total_steps]

    def finish(self, trainer, status: str, reason: str | None) -> None:
        self.records[trainer.run_hash] = {**trainer.finish(status, reason, self.resumed[trainer.run_hash]),
                                          "cached": False}

    def train_step(self, trainers: list) -> dict:
        """One optimizer step of every run in ``trainers``, through one forward and one backward of the backbone.

        Returns the runs whose loss was not finite (run -> reason): they took no step; the others did.
        """
        from ..backbones import Batch, MethodRows

        started = time.perf_counter()
        batches = [trainer.encode_batch(trainer.batch_at(trainer.step)) for trainer in trainers]
        sizes = [len(batch) for batch in batches]
        for trainer in trainers:
            trainer.method.train()
        self.backbone.model.train(trainers[0].config.dropout)
        with trainers[0].autocast:
            token_losses, rows = self.backbone.token_losses(Batch.concat(batches, self.backbone.pad_token_id),
                                                            MethodRows([t.method for t in trainers], sizes))
        losses = run_means(token_losses, rows, sizes)                   # [R]: each run's mean, as alone
        values = losses.detach().tolist()
        finite = [math.isfinite(value) for value in values]
        if all(finite):
            losses.sum().backward()
        elif any(finite):
            losses[[index for index, ok in enumerate(finite) if ok]].sum().backward()
        failures = {}
        for trainer, batch, value, ok in zip(trainers, batches, values, finite):
            if ok:
                trainer.optimizer_step(batch)
            else:
                trainer.optimizer.zero_grad(set_to_none=True)
                failures[trainer] = str(trainer.non_finite(value))
        elapsed = time.perf_counter() - started
        for trainer, size, value, ok in zip(trainers, sizes, values, finite):
            if ok:  # each run is charged its share of the step's time, by rows
                trainer.end_step(value, elapsed * size / sum(sizes))
        return failures

    def evaluate(self, due: list) -> None:
        """The evaluation point of every run in ``due``: dev predictions of all in one loop, then the test split
        of those at a new best point, then each run settles its point as alone."""
        started = time.perf_counter()
        for trainer in due:
            trainer.method.eval()
        self.backbone.model.eval()

        def scores(trainers: list, split: str) -> list:
            if not trainers:
                return []
            jobs = [EvalJob(t.method, t.task, getattr(t, split), **t.eval_options()) for t in trainers]
            with trainers[0].autocast:
                return evaluate_many(self.backbone, jobs)

        dev = scores(due, "dev_examples")
        points = [trainer.dev_point(score) for trainer, (score, _) in zip(due, dev)]
        tested = [trainer for trainer, (_, wants_test) in zip(due, points) if wants_test]
        test = dict(zip(tested, scores(tested, "test_examples")))
        for trainer, (point, wants_test), (_, dev_predictions) in zip(due, points, dev):
            test_score, test_predictions = test.get(trainer, (None, dev_predictions))
            trainer.settle_point(point, wants_test, test_score, test_predictions)
        elapsed = time.perf_counter() - started
        examples = sum(len(trainer.dev_examples) for trainer in due)
        for trainer in due:
            trainer.eval_seconds += elapsed * len(trainer.dev_examples) / examples


def run_means(token_losses: torch.Tensor, rows: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Each run's mean loss ``[R]`` over its own target tokens: ``token_losses [N]`` of batch rows ``rows [N]``
    (-1: not a target), the runs owning consecutive blocks of ``sizes`` rows. Through a ``[R, N]`` membership
    matrix: the same operators for any R, and nothing read back from the device. Selected, not multiplied by 0/1,
    so one run's non-finite loss stays its own (0 * nan is nan)."""
    from ..backbones.batch import to_device

    run_of_row = to_device([run for run, size in enumerate(sizes) for _ in range(size)], rows.device)   # [B]
    owner = torch.where(rows >= 0, run_of_row.index_select(0, rows.clamp(min=0)), -1)                  # [N]
    member = owner == torch.arange(len(sizes), device=rows.device)[:, None]                            # [R, N]
    return torch.where(member, token_losses, 0.0).sum(1) / member.sum(1)
