"""The record of a run: the best-point rule (:func:`improves`, one pure function over evaluation points: dicts
with ``score``, ``dagger`` and ``lenient_score``, as :meth:`superpos.tasks.Score.to_dict` writes them), the
record a run returns (:class:`Record`), and the record of a run that raised (:func:`failed_record`)."""
from __future__ import annotations

import traceback
from typing import Any


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


class Record(dict):
    """A run's record as :func:`superpos.engine.run` returns it: the stored JSON as a dict (unchanged on disk, and
    ``record["best"]["test"]["score"]`` works as before), plus read-only attribute access to every field at any
    depth (``record.best.test.score``, ``record.config.method``), :meth:`to_dict` and :meth:`to_frame`."""

    __slots__ = ()

    def __getattr__(self, name: str):
        try:
            return _view(self[name])
        except KeyError:
            raise AttributeError(f"record has no field {name!r}; fields: {', '.join(self)}") from None

    def __setattr__(self, name, value):
        raise AttributeError("a record is read-only through attributes; copy it with to_dict() to change it")

    def to_dict(self) -> dict:
        """A deep copy as plain dicts and lists (what ``json.dumps`` writes)."""
        import copy

        return copy.deepcopy(dict(self))

    def to_frame(self):
        """One row, as :func:`superpos.engine.load_records` gives every run (a pandas DataFrame)."""
        from .frame import records_frame

        return records_frame([self.to_dict()])


class _View(dict):
    """A nested field of a :class:`Record`: a dict with the same read-only attribute access."""

    __slots__ = ()
    __getattr__ = Record.__getattr__
    __setattr__ = Record.__setattr__


def _view(value):
    if isinstance(value, dict) and not isinstance(value, _View):
        return _View(value)
    if isinstance(value, list):
        return [_view(item) for item in value]
    return value


def failed_record(config, error: BaseException) -> dict[str, Any]:
    """A record for a run (``config``: its ``RunConfig``) that raised: kept so the grid can report it, retried on the next grid run."""
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return {"hash": config.run_hash(), "config": config.to_dict(), "status": "failed", "retryable": True,
            "reason": f"{type(error).__name__}: {error}{where}", "history": [], "loss_curve": [], "best": None,
            "analysis": {}, "prompt_path": None}

