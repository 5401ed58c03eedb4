"""Records for readers: a run's :class:`Record` (attribute access), one flat row per record (:func:`record_row`)
and the pandas DataFrame of many (:func:`records_frame`), the only way notebooks and reports get numbers. A store's
records, by profile or folder: :func:`superpos.engine.results.load_records`."""
from __future__ import annotations

import copy

import pandas as pd

from .record import improves


def method_columns() -> tuple[str, ...]:
    """Method-config fields worth a column of their own (the rest stay in ``method_config``): the prompt length and
    every registered method's variant fields (:func:`superpos.methods.variant_fields`)."""
    from ..methods import variant_fields

    return tuple(dict.fromkeys(("n_prompts", *variant_fields())))


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
        return copy.deepcopy(dict(self))

    def to_frame(self) -> pd.DataFrame:
        """One row, as :func:`superpos.engine.load_records` gives every run."""
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


def best_lenient_point(record: dict) -> dict:
    """The record's best lenient point (``{"step", "epoch", "dev", "test"}``), or ``{}``.

    Records since ``best_lenient`` was added carry it. For older ones it is rebuilt from the validation history
    when validation is the reported split (protocol ``paper``): the first point with the highest lenient score,
    as the trainer selects it. A ``heldout`` record without it falls back to its strict-best point.
    """
    if record.get("best_lenient"):
        return record["best_lenient"]
    best = record.get("best") or {}
    history = [p for p in record.get("history") or [] if p.get("lenient_score") is not None]
    if (record.get("config") or {}).get("protocol", "paper") != "paper" or not history:
        return best
    point = None
    for candidate in history:  # the trainer's rule: the first of equal lenient scores
        if improves(point, candidate, lenient=True):
            point = candidate
    return {"step": point["step"], "epoch": point.get("epoch"), "dev": point, "test": point}


def record_row(record: dict) -> dict:
    """One flat row: config fields, best scores, costs; curves kept as objects. Each score comes from its own best
    point: strict metrics, invalid rate and † from the strict-best point (``best_step``), the lenient score and the
    invalid rate beside it (``*_lenient_invalid_rate``) from the lenient-best point (``best_lenient_step``)."""
    config = record["config"]
    row = {"hash": record["hash"], "status": record["status"], "reason": record.get("reason")}
    row.update({key: value for key, value in config.items() if key != "method_config"})
    row["method_config"] = config.get("method_config", {})
    for key in method_columns():
        row[key] = config.get("method_config", {}).get(key)
    best = record.get("best") or {}
    best_lenient = best_lenient_point(record) if record.get("status") == "done" else best
    for split in ("dev", "test"):
        point = best.get(split) or {}
        row[f"{split}_score"] = point.get("score")
        row[f"{split}_lenient_score"] = (best_lenient.get(split) or {}).get("lenient_score")
        row[f"{split}_invalid_rate"] = point.get("invalid_rate")
        row[f"{split}_lenient_invalid_rate"] = (best_lenient.get(split) or {}).get("invalid_rate")
        row[f"{split}_dagger"] = point.get("dagger")
        for name, value in (point.get("metrics") or {}).items():
            row[f"{split}_{name}"] = value
    row["score"] = row["test_score"]  # the reported figure under the run's protocol
    row["best_step"] = best.get("step")
    row["best_epoch"] = best.get("epoch")
    row["best_lenient_step"] = best_lenient.get("step")
    truncated = (record.get("data") or {}).get("truncated") or {}
    row["truncated_train"], row["truncated_eval"] = truncated.get("train"), truncated.get("eval")
    row["steps"] = record.get("steps")
    row["trainable_params"] = record.get("trainable_params")
    for key, value in (record.get("timing") or {}).items():
        row[key] = value
    row["peak_memory_mb"] = record.get("peak_memory_mb")
    row["history"] = record.get("history", [])
    row["loss_curve"] = record.get("loss_curve", [])
    row["analysis"] = record.get("analysis", {})
    row["prompt_path"] = record.get("prompt_path")
    row["device_name"] = (record.get("provenance") or {}).get("device")
    row["code_version"] = (record.get("provenance") or {}).get("code_version")
    row["precision"] = (record.get("precision") or {}).get("dtype")
    # the machine kind: the kernels the device string names, and what the precision probe found (AMX tiles, avx512_bf16)
    reason = (record.get("precision") or {}).get("reason") or ""
    row["machine"] = f"{row['device_name']}; {reason.split(': ', 1)[-1]}" if reason.startswith("auto") else row["device_name"]
    row["test_predictions"] = record.get("test_predictions")
    row["test_fingerprint"] = ((record.get("data") or {}).get("fingerprint") or {}).get("test")
    return row


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Records already in memory as ``load_records`` returns them: one row each, in a stable order."""
    frame = pd.DataFrame([record_row(record) for record in records])
    if not frame.empty:
        frame = frame.sort_values(["backbone", "task", "method", "dropout", "seed", "hash"], kind="stable")
        frame = frame.reset_index(drop=True)
    return frame
