"""Your own task: rows from a CSV / JSON / JSON-lines / parquet file, a ``datasets.Dataset`` or a list of dicts.

>>> task = task_from_files("reviews", train="train.csv", validation="dev.csv", inputs=["text"],
...                        label_words=["negative", "positive"])
>>> register_task(task)          # now RunConfig(task="reviews", ...) and every grid know it

The input is T5-style, as for the paper's tasks: ``"reviews text: <text>"`` (one ``<field>: <value>`` per input
field). Labels may be class ids (0, 1, ...) or the label words themselves; ``label_words=None`` makes a regression
task scored like STS-B (targets rounded to 0.2 in [0, 5]). Metrics are any of
:data:`superpos.tasks.METRIC_LABELS` (default accuracy).

A registered task's rows are part of every run hash (:meth:`RowsTask.fingerprint`), so changing the file gives new
runs instead of serving records of the old data. Registration lives in the process that makes it: register in
each process that runs the task (a notebook, a script, a Ray worker's module).
"""
from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Task, TaskError
from .metrics import METRIC_LABELS, normalize

SPLITS = ("train", "validation")


class RowsTask(Task):
    """A task over rows held in memory (``{"train": [...], "validation": [...]}``, each row a dict)."""

    benchmark = "custom"

    def __init__(self, name: str, rows: dict[str, list[dict]], *, inputs: Sequence[str],
                 label_words: Sequence[str] | None, metrics: Sequence[str] = ("accuracy",), label: str = "label",
                 description: str = ""):
        _check_name(name)
        if not inputs or isinstance(inputs, str):
            raise TaskError(f"{name}: inputs must be a list of field names, got {inputs!r}")
        unknown = [m for m in metrics if m not in METRIC_LABELS]
        if unknown or not metrics or isinstance(metrics, str):
            raise TaskError(f"{name}: unknown metric(s) {unknown or metrics!r}; known: {', '.join(METRIC_LABELS)}")
        super().__init__(name, description=description or f"custom task from {', '.join(inputs)} "
                                                           f"({'/'.join(metrics)})",
                         label_words=label_words, metric_names=metrics,
                         fields=tuple((field, field) for field in inputs))
        self.label_field = label
        self._fingerprint: str | None = None
        self._rows = {split: [self._row(row, split, i) for i, row in enumerate(rows.get(split) or [])]
                      for split in SPLITS}
        for split in SPLITS:
            if not self._rows[split]:
                raise TaskError(f"{name}: the {split} split has no rows")

    def _row(self, row: dict, split: str, position: int) -> dict:
        missing = [f for _, f in self.fields if f not in row] + ([self.label_field] if self.label_field not in row else [])
        if missing:
            raise TaskError(f"{self.name}: {split} row {position + 1} has no field {', '.join(map(repr, missing))}; "
                            f"it has {', '.join(map(repr, row))}")
        out = {field: row[field] for _, field in self.fields}
        out["label"] = self._label(row[self.label_field], split, position)
        out["idx"] = position
        return out

    def _label(self, value: Any, split: str, position: int) -> int | float:
        where = f"{self.name}: {split} row {position + 1}"
        if self.label_words is None:
            try:
                return float(value)
            except (TypeError, ValueError):
                raise TaskError(f"{where}: label {value!r} is not a number (a regression task)") from None
        text = str(value).strip()
        if text.lstrip("-").isdigit() and normalize(text) not in self._lookup:
            label = int(text)
            if not 0 <= label < len(self.label_words):
                raise TaskError(f"{where}: label id {label} is outside 0..{len(self.label_words) - 1}")
            return label
        if normalize(text) in self._lookup:
            return self._lookup[normalize(text)]
        raise TaskError(f"{where}: label {value!r} is neither a class id nor one of {self.label_words}")

    def rows(self, split: str) -> list[dict]:
        if split not in SPLITS:
            raise TaskError(f"{self.name}: split must be 'train' or 'validation', got {split!r}")
        return self._rows[split]

    def fingerprint(self) -> str:
        """Hash of the rows and the spec: part of the run hash of every run of this task (computed once: the rows
        do not change after construction)."""
        if self._fingerprint is None:
            from ..engine.store import stable_hash

            self._fingerprint = stable_hash({"rows": self._rows, "inputs": [f for _, f in self.fields],
                                             "labels": self.label_words, "metrics": list(self.metric_names)})
        return self._fingerprint


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a ``.csv``, ``.tsv``, ``.json`` (an array), ``.jsonl`` or ``.parquet`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TaskError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ","))
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix in (".json", ".jsonl"):
        text = path.read_text(encoding="utf-8-sig")
        try:
            if text.lstrip().startswith("["):
                return json.loads(text)
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise TaskError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    raise TaskError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv, .json, .jsonl or .parquet")


def task_from_files(name: str, *, train: str | Path, validation: str | Path, inputs: Sequence[str],
                    label_words: Sequence[str] | None, metrics: Sequence[str] = ("accuracy",), label: str = "label",
                    description: str = "") -> RowsTask:
    """A task from a training and a validation file (see :func:`read_rows` for the formats)."""
    return RowsTask(name, {"train": read_rows(train), "validation": read_rows(validation)}, inputs=inputs,
                    label_words=label_words, metrics=metrics, label=label, description=description)


def task_from_dataset(name: str, *, train, validation, inputs: Sequence[str], label_words: Sequence[str] | None,
                      metrics: Sequence[str] = ("accuracy",), label: str = "label", description: str = "") -> RowsTask:
    """A task from two ``datasets.Dataset`` s (or anything with ``to_list()``, or lists of dicts)."""
    def as_rows(split) -> list[dict]:
        return split.to_list() if hasattr(split, "to_list") else list(split)

    return RowsTask(name, {"train": as_rows(train), "validation": as_rows(validation)}, inputs=inputs,
                    label_words=label_words, metrics=metrics, label=label, description=description)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip().lower() or " " in name:
        raise TaskError(f"task name must be a lowercase word without spaces, got {name!r}")
