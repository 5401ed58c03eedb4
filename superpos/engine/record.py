"""What a record holds: the best-point rule (:func:`improves`, one pure function over evaluation points: dicts
with ``score``, ``dagger`` and ``lenient_score``, as :meth:`superpos.tasks.Score.to_dict` writes them), the record
of a finished run (:func:`finished_record`), of a run that raised (:func:`failed_record`) and of a run another
process holds (:func:`busy_record`), and the tally of a grid's records (:class:`GridResult`).

Reading records back (attribute access, rows, DataFrames) is :mod:`superpos.engine.frame`'s."""
from __future__ import annotations

import dataclasses
import traceback
from typing import Any

from .provenance import examples_fingerprint, fast_path_note, peak_memory_mb, provenance


def improves(best: dict | None, point: dict, *, lenient: bool = False) -> bool:
    """Whether ``point`` replaces ``best`` as the best point so far.

    Strict (the paper's rule, best validation score): a point whose labels are all valid always beats a † one,
    whatever the sign of its score (a † point's strict score is a forced 0: a valid MCC or Pearson of -5 is a
    measurement, that 0 is not); between two points of one kind the higher score wins, the earlier at a tie.
    Lenient: the higher lenient score wins, the earlier at a tie.
    """
    if best is None:
        return True
    if lenient:
        return point["lenient_score"] > best["lenient_score"]
    if best["dagger"] != point["dagger"]:
        return not point["dagger"]
    return point["score"] > best["score"]


def finished_record(trainer, status: str, reason: str | None, resumed: bool, *, prompt_path: str | None,
                    state_path: str | None, analysis: dict) -> dict[str, Any]:
    """The record of the run ``trainer`` (a :class:`~superpos.engine.train.Trainer`) ended with ``status``: its
    history and best points, the files written for it (paths relative to the store), data, cost and provenance."""
    config = trainer.config
    steps_done = max(trainer.step, 1)
    train_seconds = max(trainer.train_seconds, 1e-9)
    return {
        "hash": trainer.run_hash,
        "config": config.to_dict(),
        "status": status,
        "reason": reason,
        "retryable": False,
        "resumed": resumed,
        "history": trainer.history,
        "loss_curve": trainer.loss_curve,
        "best": trainer.best,
        "best_lenient": trainer.best_lenient,
        # the texts generated for data.test_examples at the best strict point, in their order (fingerprint.test)
        "test_predictions": trainer.best_predictions,
        "analysis": analysis,
        "prompt_path": prompt_path,
        "state_path": state_path,
        "data": {"train_examples": len(trainer.train_examples), "dev_examples": len(trainer.dev_examples),
                 "test_examples": len(trainer.test_examples), "max_new_tokens": trainer.max_new_tokens,
                 "truncated": trainer.truncation,
                 "fingerprint": examples_fingerprint(trainer.dev_examples, trainer.test_examples)},
        "trainable_params": trainer.method.trainable_parameter_count(),
        "steps": trainer.step,
        "timing": {"train_seconds": round(trainer.train_seconds, 3), "eval_seconds": round(trainer.eval_seconds, 3),
                   "steps_per_s": round(steps_done / train_seconds, 4),
                   "examples_per_s": round(steps_done * config.batch_size / train_seconds, 3),
                   "tokens_per_s": round(trainer.train_tokens / train_seconds, 1)},
        "peak_memory_mb": round(peak_memory_mb(trainer.device), 1),
        "precision": {"dtype": trainer.precision, "reason": trainer.precision_reason,
                      "backbone_dtype": str(trainer.backbone.dtype).replace("torch.", ""),
                      **fast_path_note(trainer.backbone)},
        "provenance": provenance(trainer.device, config.seed, trainer.started, trainer.packed_runs),
    }


def failed_record(config, error: BaseException) -> dict[str, Any]:
    """A record for a run (``config``: its ``RunConfig``) that raised: kept so the grid can report it, retried on the next grid run."""
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return {"hash": config.run_hash(), "config": config.to_dict(), "status": "failed", "retryable": True,
            "reason": f"{type(error).__name__}: {error}{where}", "history": [], "loss_curve": [], "best": None,
            "analysis": {}, "prompt_path": None}


def busy_record(config, run_hash: str, holder: str) -> dict[str, Any]:
    """What ``run(busy="skip")`` returns for a run another process (``holder``, in words) is training; never
    stored."""
    return {"hash": run_hash, "config": config.to_dict(), "status": "busy", "cached": False, "retryable": True,
            "reason": f"being trained by another process ({holder}); skipped", "history": [], "loss_curve": [],
            "best": None, "analysis": {}, "prompt_path": None, "state_path": None}


@dataclasses.dataclass
class GridResult:
    """The records of a grid's runs, in its order, and how many were trained now, served from the store, or
    failed."""

    records: list[dict]
    done: int = 0
    cached: int = 0
    failed: int = 0

    def count(self, record: dict) -> None:
        """Tally one run's record: served from the store (cached), trained now (done), or failed."""
        if record.get("cached") and record["status"] == "done":
            self.cached += 1
        elif record["status"] == "done":
            self.done += 1
        else:
            self.failed += 1

    def summary(self) -> str:
        return f"grid: {len(self.records)} runs: {self.done} done, {self.cached} cached, {self.failed} failed"
