"""Records -> pandas DataFrame: the only way notebooks and reports get numbers."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .store import ResultsStore

# Method-config fields worth a column of their own (the rest stay in ``method_config``).
METHOD_COLUMNS = ("n_prompts", "m", "softmax", "init", "weights_init", "fusion", "projection")


def open_store(where: str | Path | ResultsStore) -> ResultsStore:
    """A store from a store, a folder, or a profile name (that profile's working store)."""
    if isinstance(where, ResultsStore):
        return where
    path = Path(where)
    if path.is_dir() or path.is_absolute() or len(path.parts) > 1:
        return ResultsStore(path)
    return ResultsStore(profile=str(where))


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
    point = max(history, key=lambda p: p["lenient_score"])  # max keeps the first of equal scores
    return {"step": point["step"], "epoch": point.get("epoch"), "dev": point, "test": point}


def record_row(record: dict) -> dict:
    """One flat row: config fields, best scores, costs; curves kept as objects. Each score comes from its own best
    point: strict metrics, invalid rate and † from the strict-best point (``best_step``), the lenient score and the
    invalid rate beside it (``*_lenient_invalid_rate``) from the lenient-best point (``best_lenient_step``)."""
    config = record["config"]
    row = {"hash": record["hash"], "status": record["status"], "reason": record.get("reason")}
    row.update({key: value for key, value in config.items() if key != "method_config"})
    row["method_config"] = config.get("method_config", {})
    for key in METHOD_COLUMNS:
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


def load_records(where: str | Path | ResultsStore, grid=None, *, only_done: bool = False) -> pd.DataFrame:
    """The records in ``where`` (a profile name, a folder or a store) as one row each.

    With ``grid`` (a ``GridSpec`` or dict, or a list of run configs such as
    ``superpos.profiles.profile_configs(profile)``), only those runs; a run without a record is simply absent
    (run it first).
    """
    store = open_store(where)
    records = list(store.records())
    if grid is not None:
        from .grid import GridSpec, expand

        if isinstance(grid, (list, tuple)):
            wanted = {config.run_hash() for config in grid}
        else:
            spec = grid if isinstance(grid, GridSpec) else GridSpec.from_dict(grid)
            wanted = {config.run_hash() for config in expand(spec)}
        records = [record for record in records if record["hash"] in wanted]
    if only_done:
        records = [record for record in records if record["status"] == "done"]
    return records_frame(records)


def records_frame(records: list[dict]) -> pd.DataFrame:
    """Records already in memory as ``load_records`` returns them: one row each, in a stable order."""
    frame = pd.DataFrame([record_row(record) for record in records])
    if not frame.empty:
        frame = frame.sort_values(["backbone", "task", "method", "dropout", "seed", "hash"], kind="stable")
        frame = frame.reset_index(drop=True)
    return frame
